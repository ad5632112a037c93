//! The Knative manifest generated from the real stack.yml keeps what
//! `faas-cli generate --api=serving.knative.dev/v1` drops: every scaling
//! label as an autoscaling annotation, every request and limit, the request
//! timeout, the secrets and a non-root security context.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use dev_gateway::{Stack, knative};
use fleet_tests::repo_root;
use serde_json::Value;

fn stack() -> Stack {
    Stack::load(&repo_root().join("stack.yml"), &|name| {
        (name == "VERTEX_PROJECT").then(|| "knative-project".to_owned())
    })
    .unwrap()
}

#[test]
fn every_function_keeps_its_scaling_resources_and_secrets_on_knative() {
    let stack = stack();
    let services = knative::services(&stack, "openfaas-fn").unwrap();
    assert_eq!(services.len(), stack.functions.len());
    for service in &services {
        let name = service["metadata"]["name"].as_str().unwrap();
        let function = &stack.functions[name];
        assert_eq!(service["apiVersion"], "serving.knative.dev/v1");
        assert_eq!(service["kind"], "Service");
        let template = &service["spec"]["template"];
        let annotations = &template["metadata"]["annotations"];
        let annotation = |key: &str| {
            annotations[format!("autoscaling.knative.dev/{key}")]
                .as_str()
                .map(str::to_owned)
        };
        let label = |key: &str| function.labels.get(key).cloned();
        // Scaling: max always, min or scale-to-zero with its retention.
        assert_eq!(annotation("max-scale"), label(knative::SCALE_MAX), "{name}");
        if label(knative::SCALE_ZERO).as_deref() == Some("true") {
            assert_eq!(annotation("min-scale").as_deref(), Some("0"), "{name}");
            assert_eq!(annotation("initial-scale"), label(knative::SCALE_MIN));
            assert_eq!(
                annotation("scale-to-zero-pod-retention-period"),
                label(knative::SCALE_ZERO_DURATION),
                "{name}"
            );
        } else {
            assert_eq!(annotation("min-scale"), label(knative::SCALE_MIN), "{name}");
        }

        let spec = &template["spec"];
        let container = &spec["containers"][0];
        assert_eq!(container["image"].as_str(), function.image.as_deref());
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        // Every request and limit, unchanged.
        for (kind, wanted) in [
            ("requests", &function.requests),
            ("limits", &function.limits),
        ] {
            assert!(!wanted.is_empty(), "{name}: stack.yml sets {kind}");
            assert_eq!(
                container["resources"][kind],
                serde_json::to_value(wanted).unwrap(),
                "{name} {kind}"
            );
        }
        // The whole environment.
        let env: std::collections::BTreeMap<String, String> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(&env, &function.environment, "{name}");
        // Knative's request timeout covers the watchdog's write_timeout.
        let write_timeout =
            dev_gateway::go_duration::parse_go_duration(&function.environment["write_timeout"])
                .unwrap();
        assert!(spec["timeoutSeconds"].as_u64().unwrap() >= write_timeout.as_secs());
        // Secrets where the functions read them.
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .map(|m| m.iter().map(|m| m["mountPath"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let wanted: Vec<String> = function
            .secrets
            .iter()
            .map(|s| format!("/var/openfaas/secrets/{s}"))
            .collect();
        assert_eq!(mounts, wanted, "{name}");
        // The image's numeric non-root user.
        assert_eq!(
            container["securityContext"]["runAsNonRoot"],
            Value::Bool(true)
        );
        assert_eq!(container["securityContext"]["runAsUser"], 65532);
    }
}

#[test]
fn the_manifest_is_yaml_with_one_document_per_function() {
    let services = knative::services(&stack(), "openfaas-fn").unwrap();
    let yaml = knative::to_yaml(&services).unwrap();
    assert_eq!(yaml.matches("kind: Service").count(), services.len());
    assert!(yaml.contains("autoscaling.knative.dev/max-scale"));
    assert!(yaml.contains("VERTEX_PROJECT"));
}
