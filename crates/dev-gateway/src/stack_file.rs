//! `stack.yml` as faas-cli reads it (go-sdk `stack/schema.go`): only the fields the
//! local runner uses are kept, unknown keys are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::envsubst;
use crate::yaml_values::{optional_list, string_map};

/// A parsed and validated stack file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stack {
    /// Where the stack was read from; relative `environment_file` paths resolve
    /// against its folder, as in faas-cli.
    pub path: PathBuf,
    /// Functions by name.
    pub functions: BTreeMap<String, StackFunction>,
}

/// One entry of `functions:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StackFunction {
    /// Template name (`lang:`); informative only.
    #[serde(default)]
    pub lang: Option<String>,
    /// Handler folder, e.g. `./functions/llm-router`.
    #[serde(default)]
    pub handler: Option<String>,
    /// Image reference, reported by `/system/functions`.
    #[serde(default)]
    pub image: Option<String>,
    /// The environment the function gets: the inline `environment:` map merged
    /// with every `environment_file` in order. File values override inline ones,
    /// exactly as `faas-cli deploy` merges them.
    #[serde(default, deserialize_with = "string_map")]
    pub environment: BTreeMap<String, String>,
    /// Files holding an `environment:` map, relative to the stack file's folder.
    #[serde(default, deserialize_with = "optional_list")]
    pub environment_file: Vec<String>,
    /// Secret names; each is a file in the secrets folder.
    #[serde(default, deserialize_with = "optional_list")]
    pub secrets: Vec<String>,
    /// Labels, including the `com.openfaas.scale.*` family.
    #[serde(default, deserialize_with = "string_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, reported by `/system/functions`.
    #[serde(default, deserialize_with = "string_map")]
    pub annotations: BTreeMap<String, String>,
    /// Resource limits; parsed for validation, not enforced locally.
    #[serde(default, deserialize_with = "string_map")]
    pub limits: BTreeMap<String, String>,
    /// Resource requests; parsed for validation, not enforced locally.
    #[serde(default, deserialize_with = "string_map")]
    pub requests: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawStack {
    #[serde(default)]
    provider: Option<RawProvider>,
    #[serde(default)]
    functions: Option<BTreeMap<String, StackFunction>>,
}

#[derive(Deserialize)]
struct RawProvider {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct EnvironmentFile {
    #[serde(default, deserialize_with = "string_map")]
    environment: BTreeMap<String, String>,
}

impl Stack {
    /// Reads, expands (`${VAR:-default}` from `lookup`) and parses a stack file,
    /// then merges each function's `environment_file`s.
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Stack, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file("reading", path, e))?;
        Stack::parse(&text, path, lookup)
    }

    /// Parses stack text; `path` names the file in errors and anchors relative
    /// `environment_file` paths.
    pub fn parse(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Stack, Error> {
        let expanded =
            envsubst::expand(text, lookup).map_err(|(line, message)| Error::Substitution {
                path: path.to_owned(),
                line,
                message,
            })?;
        let raw: RawStack = serde_saphyr::from_str(&expanded).map_err(|e| Error::Yaml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(name) = raw.provider.and_then(|p| p.name)
            && name != "openfaas"
        {
            return Err(Error::InvalidField {
                path: path.to_owned(),
                field: "provider.name".to_owned(),
                message: format!("must be \"openfaas\", found {name:?}"),
            });
        }
        let base_dir = path.parent().unwrap_or(Path::new(""));
        let mut functions = raw.functions.unwrap_or_default();
        for (name, function) in &mut functions {
            if !crate::is_valid_function_name(name) {
                return Err(Error::InvalidField {
                    path: path.to_owned(),
                    field: format!("functions.{name}"),
                    message: "function names must match [-a-zA-Z_0-9.]+".to_owned(),
                });
            }
            for file in &function.environment_file {
                let file_path = base_dir.join(file);
                let text = std::fs::read_to_string(&file_path)
                    .map_err(|e| Error::file("reading environment_file", &file_path, e))?;
                let parsed: EnvironmentFile =
                    serde_saphyr::from_str(&text).map_err(|e| Error::Yaml {
                        path: file_path.clone(),
                        message: e.to_string(),
                    })?;
                function.environment.extend(parsed.environment);
            }
        }
        Ok(Stack {
            path: path.to_owned(),
            functions,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Stack, Error> {
        Stack::parse(text, Path::new("stack.yml"), &no_env)
    }

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir =
                std::env::temp_dir().join(format!("dev-gateway-stack-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const FULL: &str = r#"
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  llm-router:
    lang: rust-fleet
    handler: ./functions/llm-router
    image: ghcr.io/example/llm-router:latest
    some_future_key: ignored
    environment:
      write_timeout: 65s
      port: 8080
      RUST_LOG:
    secrets:
      - groq-api-key
      - vertex-sa
    labels:
      com.openfaas.scale.min: "1"
      com.openfaas.scale.zero: true
      com.openfaas.scale.zero-duration: 5m
      ratio: 1.50
    annotations:
      owner: platform
    limits:
      memory: 256Mi
      cpu: 500m
    requests:
      memory: 64Mi
      cpu: 1
  embed:
    handler: ./functions/embed
configuration:
  copy: [./crates]
"#;

    #[test]
    fn parses_functions_environment_labels_and_ignores_unknown_keys() {
        let stack = parse(FULL).unwrap();
        assert_eq!(stack.functions.len(), 2);
        let router = &stack.functions["llm-router"];
        assert_eq!(router.handler.as_deref(), Some("./functions/llm-router"));
        assert_eq!(
            router.image.as_deref(),
            Some("ghcr.io/example/llm-router:latest")
        );
        assert_eq!(router.environment["write_timeout"], "65s");
        assert_eq!(router.environment["port"], "8080");
        assert_eq!(router.environment["RUST_LOG"], "");
        assert_eq!(router.secrets, ["groq-api-key", "vertex-sa"]);
        assert_eq!(router.annotations["owner"], "platform");
        assert_eq!(router.limits["memory"], "256Mi");
        assert_eq!(router.requests["cpu"], "1");
        let embed = &stack.functions["embed"];
        assert!(
            embed.environment.is_empty() && embed.labels.is_empty() && embed.secrets.is_empty()
        );
    }

    #[test]
    fn label_values_keep_their_text_quoted_or_not() {
        let stack = parse(FULL).unwrap();
        let labels = &stack.functions["llm-router"].labels;
        assert_eq!(labels["com.openfaas.scale.min"], "1");
        assert_eq!(labels["com.openfaas.scale.zero"], "true");
        assert_eq!(labels["com.openfaas.scale.zero-duration"], "5m");
        assert_eq!(labels["ratio"], "1.50");
    }

    #[test]
    fn envsubst_defaults_and_values_apply_before_parsing() {
        let vars: HashMap<&str, &str> = [("TAG", "v9")].into();
        let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
        let text = "functions:\n  embed:\n    image: reg/embed:${TAG:-latest}\n    labels:\n      com.openfaas.scale.zero-duration: ${EMBED_IDLE:-2m}\n";
        let stack = Stack::parse(text, Path::new("stack.yml"), &lookup).unwrap();
        let embed = &stack.functions["embed"];
        assert_eq!(embed.image.as_deref(), Some("reg/embed:v9"));
        assert_eq!(embed.labels["com.openfaas.scale.zero-duration"], "2m");
    }

    #[test]
    fn environment_files_merge_in_order_and_override_inline_values() {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.0.join("env")).unwrap();
        std::fs::write(
            dir.0.join("env/common.yml"),
            "environment:\n  LOG_FORMAT: json\n  SHARED: from-common\n  INLINE_ONLY_IN_FILE: common\n",
        )
        .unwrap();
        std::fs::write(
            dir.0.join("env/embed.yml"),
            "environment:\n  SHARED: from-embed\n  batch: 32\n",
        )
        .unwrap();
        let stack_path = dir.0.join("stack.yml");
        std::fs::write(
            &stack_path,
            "functions:\n  embed:\n    environment:\n      SHARED: inline\n      INLINE: yes-inline\n      INLINE_ONLY_IN_FILE: inline\n    environment_file:\n      - env/common.yml\n      - env/embed.yml\n",
        )
        .unwrap();
        let stack = Stack::load(&stack_path, &no_env).unwrap();
        let env = &stack.functions["embed"].environment;
        assert_eq!(env["LOG_FORMAT"], "json");
        assert_eq!(env["SHARED"], "from-embed", "the last file wins");
        assert_eq!(
            env["INLINE_ONLY_IN_FILE"], "common",
            "files override inline, as faas-cli does"
        );
        assert_eq!(env["INLINE"], "yes-inline");
        assert_eq!(env["batch"], "32");
    }

    #[test]
    fn missing_environment_file_names_the_file() {
        let err =
            parse("functions:\n  embed:\n    environment_file: [nope/missing.yml]\n").unwrap_err();
        assert!(err.to_string().contains("missing.yml"), "{err}");
    }

    #[test]
    fn a_map_where_a_label_value_belongs_names_the_label() {
        let err =
            parse("functions:\n  embed:\n    labels:\n      com.openfaas.scale.min: {a: 1}\n")
                .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`com.openfaas.scale.min`"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn wrong_types_point_at_the_field() {
        let err = parse("functions:\n  embed:\n    secrets: groq-api-key\n").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("stack.yml:"), "{message}");
        assert!(
            message.contains("line 3") && message.contains("secrets: groq-api-key"),
            "{message}"
        );

        let err = parse("functions:\n  embed:\n    environment:\n      - A=1\n").unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("line 4") && message.contains("- A=1"),
            "{message}"
        );
    }

    #[test]
    fn other_providers_and_bad_names_are_rejected() {
        let err = parse("provider:\n  name: faas\nfunctions: {}\n").unwrap_err();
        assert!(err.to_string().contains("provider.name"), "{err}");
        let err = parse("functions:\n  \"bad/name\":\n    handler: ./x\n").unwrap_err();
        assert!(err.to_string().contains("functions.bad/name"), "{err}");
    }

    #[test]
    fn bad_substitution_names_the_line() {
        let err = parse("functions:\n  embed:\n    image: ${TAG\n").unwrap_err();
        assert!(err.to_string().contains("stack.yml: line 3"), "{err}");
    }

    #[test]
    fn yaml_anchors_and_merge_keys_work() {
        let stack = parse(
            "x-env: &common\n  LOG_FORMAT: json\n  RUST_LOG: info\nfunctions:\n  a:\n    environment:\n      <<: *common\n      RUST_LOG: debug\n  b:\n    environment: *common\n",
        )
        .unwrap();
        assert_eq!(stack.functions["a"].environment["LOG_FORMAT"], "json");
        assert_eq!(stack.functions["a"].environment["RUST_LOG"], "debug");
        assert_eq!(stack.functions["b"].environment["RUST_LOG"], "info");
    }

    #[test]
    fn empty_functions_are_allowed() {
        assert!(parse("functions:\n").unwrap().functions.is_empty());
        assert!(parse("version: 1.0\n").unwrap().functions.is_empty());
    }
}
