//! Knative Services for the functions of a stack file: what
//! `faas-cli generate --api=serving.knative.dev/v1` emits, plus what it drops
//! (the scaling labels as Knative autoscaling annotations, resource requests
//! and limits, the request timeout, the watchdog's port and a non-root
//! security context).
//!
//! | stack.yml | Knative |
//! |---|---|
//! | `com.openfaas.scale.min` | `autoscaling.knative.dev/min-scale` (and `initial-scale`) |
//! | `com.openfaas.scale.max` | `autoscaling.knative.dev/max-scale` |
//! | `com.openfaas.scale.zero: "true"` | `min-scale: "0"`, `initial-scale` = scale.min |
//! | `com.openfaas.scale.zero-duration` | `autoscaling.knative.dev/scale-to-zero-pod-retention-period` |
//! | `requests`, `limits` | the container's `resources` |
//! | `environment.write_timeout` | `timeoutSeconds` (whole seconds, rounded up) |
//! | `secrets` | secret volumes at `/var/openfaas/secrets/<name>` |
//! | `annotations` | template annotations, unchanged |

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::Error;
use crate::go_duration::parse_go_duration;
use crate::stack_file::{Stack, StackFunction};

/// The OpenFaaS scaling labels.
pub const SCALE_MIN: &str = "com.openfaas.scale.min";
/// Upper bound of replicas.
pub const SCALE_MAX: &str = "com.openfaas.scale.max";
/// Scale to zero when idle (OpenFaaS Pro).
pub const SCALE_ZERO: &str = "com.openfaas.scale.zero";
/// Idle time before scaling to zero (OpenFaaS Pro).
pub const SCALE_ZERO_DURATION: &str = "com.openfaas.scale.zero-duration";

/// Where OpenFaaS mounts secrets, and so where the functions read them.
const SECRETS_PATH: &str = "/var/openfaas/secrets";
/// distroless's nonroot user, the image's `USER`.
const NON_ROOT_ID: u32 = 65532;

/// One Knative Service per function of `stack`, in name order.
pub fn services(stack: &Stack, namespace: &str) -> Result<Vec<Value>, Error> {
    stack
        .functions
        .iter()
        .map(|(name, function)| service(&stack.path, name, function, namespace))
        .collect()
}

fn invalid(path: &Path, name: &str, field: &str, message: String) -> Error {
    Error::InvalidField {
        path: path.to_owned(),
        field: format!("functions.{name}.{field}"),
        message,
    }
}

fn autoscaling(
    path: &Path,
    name: &str,
    function: &StackFunction,
) -> Result<Map<String, Value>, Error> {
    let label = |key: &str| function.labels.get(key).map(String::as_str);
    let mut annotations = Map::new();
    let min = label(SCALE_MIN);
    if let Some(min) = min {
        min.parse::<u32>()
            .map_err(|e| invalid(path, name, &format!("labels.{SCALE_MIN}"), e.to_string()))?;
    }
    let to_zero = match label(SCALE_ZERO) {
        None => false,
        Some(value) => value
            .parse::<bool>()
            .map_err(|e| invalid(path, name, &format!("labels.{SCALE_ZERO}"), e.to_string()))?,
    };
    if to_zero {
        annotations.insert("autoscaling.knative.dev/min-scale".into(), "0".into());
        if let Some(min) = min {
            annotations.insert("autoscaling.knative.dev/initial-scale".into(), min.into());
        }
        if let Some(duration) = label(SCALE_ZERO_DURATION) {
            parse_go_duration(duration).map_err(|e| {
                invalid(
                    path,
                    name,
                    &format!("labels.{SCALE_ZERO_DURATION}"),
                    e.to_string(),
                )
            })?;
            annotations.insert(
                "autoscaling.knative.dev/scale-to-zero-pod-retention-period".into(),
                duration.into(),
            );
        }
    } else if let Some(min) = min {
        annotations.insert("autoscaling.knative.dev/min-scale".into(), min.into());
        annotations.insert("autoscaling.knative.dev/initial-scale".into(), min.into());
    }
    if let Some(max) = label(SCALE_MAX) {
        max.parse::<u32>()
            .map_err(|e| invalid(path, name, &format!("labels.{SCALE_MAX}"), e.to_string()))?;
        annotations.insert("autoscaling.knative.dev/max-scale".into(), max.into());
    }
    for (key, value) in &function.annotations {
        annotations.insert(key.clone(), value.clone().into());
    }
    Ok(annotations)
}

fn service(
    path: &Path,
    name: &str,
    function: &StackFunction,
    namespace: &str,
) -> Result<Value, Error> {
    let image = function
        .image
        .clone()
        .ok_or_else(|| invalid(path, name, "image", "an image is required".to_owned()))?;
    let env: Vec<Value> = function
        .environment
        .iter()
        .map(|(key, value)| json!({"name": key, "value": value}))
        .collect();
    let mut resources = Map::new();
    if !function.requests.is_empty() {
        resources.insert("requests".into(), json!(function.requests));
    }
    if !function.limits.is_empty() {
        resources.insert("limits".into(), json!(function.limits));
    }
    let mounts: Vec<Value> = function
        .secrets
        .iter()
        .map(|secret| {
            json!({"name": secret, "mountPath": format!("{SECRETS_PATH}/{secret}"), "readOnly": true})
        })
        .collect();
    let volumes: Vec<Value> = function
        .secrets
        .iter()
        .map(|secret| json!({"name": secret, "secret": {"secretName": secret}}))
        .collect();
    let mut container = json!({
        "name": name,
        "image": image,
        "ports": [{"containerPort": 8080}],
        "env": env,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NON_ROOT_ID,
            "runAsGroup": NON_ROOT_ID,
            "allowPrivilegeEscalation": false,
        },
    });
    if !resources.is_empty() {
        container["resources"] = Value::Object(resources);
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = Value::Array(mounts);
    }
    let mut spec = json!({"containers": [container]});
    if let Some(timeout) = function.environment.get("write_timeout") {
        let timeout = parse_go_duration(timeout)
            .map_err(|e| invalid(path, name, "environment.write_timeout", e.to_string()))?;
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        spec["timeoutSeconds"] = json!(seconds);
    }
    if !volumes.is_empty() {
        spec["volumes"] = Value::Array(volumes);
    }
    Ok(json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"faas_function": name},
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"faas_function": name},
                    "annotations": autoscaling(path, name, function)?,
                },
                "spec": spec,
            },
        },
    }))
}

/// The services as one multi-document YAML text.
pub fn to_yaml(services: &[Value]) -> Result<String, Error> {
    serde_saphyr::to_string_multiple(services).map_err(|e| Error::Yaml {
        path: std::path::PathBuf::from("<knative>"),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = r#"
version: 1.0
provider: {name: openfaas}
functions:
  idle:
    image: r/idle:1
    environment: {write_timeout: 35s, A: "1"}
    labels:
      com.openfaas.scale.min: "1"
      com.openfaas.scale.max: "5"
      com.openfaas.scale.zero: "true"
      com.openfaas.scale.zero-duration: "15m"
    requests: {memory: 16Mi, cpu: 20m}
    limits: {memory: 64Mi, cpu: 250m}
    secrets: [key]
  always:
    image: r/always:1
    labels:
      com.openfaas.scale.min: "2"
      com.openfaas.scale.zero: "false"
"#;

    fn generated() -> Vec<Value> {
        let stack = Stack::parse(STACK, Path::new("stack.yml"), &|_| None).unwrap_or_default();
        services(&stack, "fn").unwrap_or_default()
    }

    #[test]
    fn scale_to_zero_maps_to_min_scale_zero_with_retention() {
        let services = generated();
        let idle = &services[1]["spec"]["template"];
        assert_eq!(services[1]["metadata"]["name"], "idle");
        let annotations = &idle["metadata"]["annotations"];
        assert_eq!(annotations["autoscaling.knative.dev/min-scale"], "0");
        assert_eq!(annotations["autoscaling.knative.dev/initial-scale"], "1");
        assert_eq!(annotations["autoscaling.knative.dev/max-scale"], "5");
        assert_eq!(
            annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"],
            "15m"
        );
        let container = &idle["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["cpu"], "250m");
        assert_eq!(container["resources"]["requests"]["memory"], "16Mi");
        assert_eq!(idle["spec"]["timeoutSeconds"], 35);
        assert_eq!(
            container["volumeMounts"][0]["mountPath"],
            "/var/openfaas/secrets/key"
        );
    }

    #[test]
    fn no_scale_to_zero_keeps_the_minimum() {
        let services = generated();
        let always = &services[0]["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(always["autoscaling.knative.dev/min-scale"], "2");
        assert!(always.get("autoscaling.knative.dev/max-scale").is_none());
    }

    #[test]
    fn bad_labels_are_refused_by_name() {
        let text = STACK.replace("\"5\"", "\"many\"");
        let stack = Stack::parse(&text, Path::new("stack.yml"), &|_| None).unwrap_or_default();
        let err = services(&stack, "fn")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("com.openfaas.scale.max"), "{err}");
    }
}
