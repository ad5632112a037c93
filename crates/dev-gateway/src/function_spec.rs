//! What the gateway needs to run one function, built from `stack.yml` or given
//! directly (tests run any binary this way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::go_duration::parse_go_duration;
use crate::stack_file::{Stack, StackFunction};

/// `com.openfaas.scale.min`: replicas started with the gateway (0 or 1 locally).
pub const LABEL_SCALE_MIN: &str = "com.openfaas.scale.min";
/// `com.openfaas.scale.zero`: `"true"` lets an idle function scale to zero.
pub const LABEL_SCALE_ZERO: &str = "com.openfaas.scale.zero";
/// `com.openfaas.scale.zero-duration`: idle time before scaling to zero (Go duration).
pub const LABEL_SCALE_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";
/// OpenFaaS' default for `com.openfaas.scale.zero-duration`.
pub const DEFAULT_ZERO_DURATION: Duration = Duration::from_secs(15 * 60);

/// One function the gateway can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Name in `/function/<name>`.
    pub name: String,
    /// Program to run.
    pub command: PathBuf,
    /// Arguments for `command`.
    pub args: Vec<String>,
    /// Environment of the process, on top of the gateway's own environment.
    /// The gateway then sets `upstream_url`, `SECRETS_DIR` and
    /// `OPENFAAS_GATEWAY_URL`, which win over values given here.
    pub env: BTreeMap<String, String>,
    /// Stop the process after it has been idle this long; `None` keeps it up.
    pub idle: Option<Duration>,
    /// `1` starts the process with the gateway; `0` starts it on first request.
    pub min_replicas: u32,
    /// Secret names exposed to the function (files of the secrets folder).
    pub secrets: Vec<String>,
    /// Labels, reported by `/system/functions`.
    pub labels: BTreeMap<String, String>,
    /// Annotations, reported by `/system/functions`.
    pub annotations: BTreeMap<String, String>,
    /// Image, reported by `/system/functions`.
    pub image: String,
}

/// How stack functions become [`FunctionSpec`]s.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    /// Folder holding one binary per function, named after the function.
    pub bin_dir: PathBuf,
    /// `--env-file` values; they override the stack environment.
    pub env_overrides: BTreeMap<String, String>,
    /// `--idle`: replaces every function's idle time.
    pub idle_override: Option<Duration>,
}

impl FunctionSpec {
    /// A function running `command` with no arguments, environment, labels or
    /// secrets, started on first request and never stopped for idleness.
    pub fn new(name: impl Into<String>, command: impl Into<PathBuf>) -> Self {
        FunctionSpec {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            idle: None,
            min_replicas: 0,
            secrets: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            image: String::new(),
        }
    }

    /// Sets one environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the idle time after which the process is stopped.
    pub fn with_idle(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Sets the replicas started with the gateway (0 or 1).
    pub fn with_min_replicas(mut self, min_replicas: u32) -> Self {
        self.min_replicas = min_replicas;
        self
    }

    /// Sets the secrets the function may read.
    pub fn with_secrets(mut self, secrets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.secrets = secrets.into_iter().map(Into::into).collect();
        self
    }

    /// Builds the spec of one stack function: binary `<bin_dir>/<name>`, stack
    /// environment then `env_overrides`, scaling from the `com.openfaas.scale.*` labels.
    pub fn from_stack_function(
        stack_path: &Path,
        name: &str,
        function: &StackFunction,
        options: &SpecOptions,
    ) -> Result<Self, Error> {
        let label_error = |label: &str, message: String| Error::InvalidField {
            path: stack_path.to_owned(),
            field: format!("functions.{name}.labels.{label}"),
            message,
        };
        let min_replicas = match function.labels.get(LABEL_SCALE_MIN) {
            None => 0,
            Some(text) => text.trim().parse::<u32>().map_err(|_| {
                label_error(
                    LABEL_SCALE_MIN,
                    format!("expected a whole number, found {text:?}"),
                )
            })?,
        };
        let scale_to_zero = function
            .labels
            .get(LABEL_SCALE_ZERO)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let label_idle = match function.labels.get(LABEL_SCALE_ZERO_DURATION) {
            Some(text) if scale_to_zero => Some(
                parse_go_duration(text.trim())
                    .map_err(|e| label_error(LABEL_SCALE_ZERO_DURATION, e.to_string()))?,
            ),
            None if scale_to_zero => Some(DEFAULT_ZERO_DURATION),
            _ => None,
        };
        let mut env = function.environment.clone();
        env.extend(options.env_overrides.clone());
        Ok(FunctionSpec {
            name: name.to_owned(),
            command: options.bin_dir.join(name),
            args: Vec::new(),
            env,
            idle: options.idle_override.or(label_idle),
            min_replicas: min_replicas.min(1),
            secrets: function.secrets.clone(),
            labels: function.labels.clone(),
            annotations: function.annotations.clone(),
            image: function.image.clone().unwrap_or_default(),
        })
    }

    /// Builds the specs of every function of a stack, in name order.
    pub fn from_stack(stack: &Stack, options: &SpecOptions) -> Result<Vec<Self>, Error> {
        stack
            .functions
            .iter()
            .map(|(name, function)| {
                FunctionSpec::from_stack_function(&stack.path, name, function, options)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_stack(text: &str) -> Stack {
        Stack::parse(text, Path::new("stack.yml"), &|_| None).unwrap()
    }

    fn options() -> SpecOptions {
        SpecOptions {
            bin_dir: PathBuf::from("target/debug"),
            ..SpecOptions::default()
        }
    }

    #[test]
    fn scaling_labels_become_idle_and_min_replicas() {
        let stack = parse_stack(
            "functions:\n  a:\n    labels:\n      com.openfaas.scale.zero: true\n      com.openfaas.scale.zero-duration: 5m\n      com.openfaas.scale.min: \"1\"\n  b:\n    labels:\n      com.openfaas.scale.zero: \"true\"\n  c:\n    labels:\n      com.openfaas.scale.zero: false\n      com.openfaas.scale.zero-duration: 1m\n  d: {}\n",
        );
        let specs = FunctionSpec::from_stack(&stack, &options()).unwrap();
        let by_name = |n: &str| specs.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by_name("a").idle, Some(Duration::from_secs(300)));
        assert_eq!(by_name("a").min_replicas, 1);
        assert_eq!(by_name("b").idle, Some(DEFAULT_ZERO_DURATION));
        assert_eq!(
            by_name("c").idle,
            None,
            "zero-duration alone does not enable scale to zero"
        );
        assert_eq!(by_name("d").idle, None);
        assert_eq!(by_name("d").min_replicas, 0);
        assert_eq!(by_name("d").command, PathBuf::from("target/debug/d"));
    }

    #[test]
    fn idle_override_applies_to_every_function() {
        let stack = parse_stack(
            "functions:\n  a:\n    labels:\n      com.openfaas.scale.zero: true\n  d: {}\n",
        );
        let options = SpecOptions {
            idle_override: Some(Duration::from_millis(200)),
            ..options()
        };
        for spec in FunctionSpec::from_stack(&stack, &options).unwrap() {
            assert_eq!(spec.idle, Some(Duration::from_millis(200)), "{}", spec.name);
        }
    }

    #[test]
    fn env_file_overrides_stack_environment() {
        let stack = parse_stack(
            "functions:\n  a:\n    environment:\n      KEEP: stack\n      OVERRIDE: stack\n",
        );
        let options = SpecOptions {
            env_overrides: [
                ("OVERRIDE".to_owned(), "dev".to_owned()),
                ("EXTRA".to_owned(), "x".to_owned()),
            ]
            .into(),
            ..options()
        };
        let spec = FunctionSpec::from_stack(&stack, &options)
            .unwrap()
            .remove(0);
        assert_eq!(spec.env["KEEP"], "stack");
        assert_eq!(spec.env["OVERRIDE"], "dev");
        assert_eq!(spec.env["EXTRA"], "x");
    }

    #[test]
    fn bad_scaling_labels_name_the_label() {
        let stack =
            parse_stack("functions:\n  a:\n    labels:\n      com.openfaas.scale.min: one\n");
        let err = FunctionSpec::from_stack(&stack, &options()).unwrap_err();
        assert!(
            err.to_string()
                .contains("functions.a.labels.com.openfaas.scale.min"),
            "{err}"
        );

        let stack = parse_stack(
            "functions:\n  a:\n    labels:\n      com.openfaas.scale.zero: true\n      com.openfaas.scale.zero-duration: 5 minutes\n",
        );
        let err = FunctionSpec::from_stack(&stack, &options()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("functions.a.labels.com.openfaas.scale.zero-duration"),
            "{message}"
        );
        assert!(message.contains("\"5 minutes\""), "{message}");
    }

    #[test]
    fn more_than_one_replica_is_capped_at_one() {
        let stack = parse_stack("functions:\n  a:\n    labels:\n      com.openfaas.scale.min: 3\n");
        assert_eq!(
            FunctionSpec::from_stack(&stack, &options()).unwrap()[0].min_replicas,
            1
        );
    }
}
