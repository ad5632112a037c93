//! Exploration through the whole fleet: with half the calls exploring, a
//! private request only ever explores in-cluster models (and nothing reaches
//! an external provider), and the calls that explore keep to their share.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;

use fleet_tests::{Fleet, FleetOptions};
use serde_json::json;

/// The built-in catalogue with one rule ranking two in-cluster and two
/// external models by score, so that every call has candidates of both
/// kinds to explore unless privacy takes the external ones away.
fn mixed_policy() -> String {
    let policy = routing_core::policy::DEFAULT_POLICY;
    let head = &policy[..policy.find("\n[[rule]]").unwrap()];
    format!(
        "{head}\n\n[[rule]]\nname = \"mixed\"\nmodels = [\"ollama/local\", \
         \"vllm/qwen2.5-7b-instruct\", \"groq/llama-3.1-8b-instant\", \
         \"vertex/gemini-2.5-flash\"]\n"
    )
}

/// Chat calls an emulator answered.
fn chat_calls(fleet: &Fleet, provider: &str) -> u64 {
    fleet
        .emulator(provider)
        .stats()
        .by_path
        .iter()
        .filter(|(path, _)| !path.starts_with("/_emulator") && !path.ends_with("/token"))
        .map(|(_, n)| n)
        .sum()
}

async fn explorations(fleet: &Fleet) -> f64 {
    let metrics = fleet.metrics("llm-router").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("llm_router_explorations_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_requests_explore_in_cluster_and_exploration_keeps_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, mixed_policy()).unwrap();
    let share = 0.5;
    let fleet = Fleet::start(FleetOptions {
        env: BTreeMap::from([
            ("POLICY_PATH".to_owned(), path.display().to_string()),
            ("LEARNING_EXPLORE_SHARE".to_owned(), share.to_string()),
            ("LEARNING_SEED".to_owned(), "11".to_owned()),
        ]),
        ..FleetOptions::default()
    })
    .await;
    let in_cluster = ["ollama/local", "vllm/qwen2.5-7b-instruct"];
    let external = ["groq", "vertex"];

    // Private: every model of every chain is in-cluster, explored or not.
    let mut explored = 0u32;
    for i in 0..40 {
        let answer = fleet
            .route(json!({
                "task": "generate",
                "difficulty": "medium",
                "prompt": format!("Private note {i}: summarise it."),
                "private": true,
            }))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let route = &answer.json["route"];
        assert_eq!(route["rule"], "mixed", "{route}");
        let chain = std::iter::once(&route["model"]).chain(route["fallbacks"].as_array().unwrap());
        for model in chain {
            assert!(
                in_cluster.contains(&model.as_str().unwrap()),
                "a private chain holds {model}: {route}"
            );
        }
        if route["explored"] == true {
            explored += 1;
        }
    }
    assert!(
        explored > 0,
        "no private call explored: the test saw nothing"
    );
    for provider in external {
        assert_eq!(
            chat_calls(&fleet, provider),
            0,
            "a private call reached {provider}"
        );
    }

    // Not private: the share of calls that explore stays within four
    // standard deviations of a binomial(n, share), and the metric counts
    // them all.
    let n = 200u32;
    for i in 0..n {
        let answer = fleet
            .route(json!({
                "task": "generate",
                "difficulty": "medium",
                "prompt": format!("Question {i}: say something."),
            }))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        if answer.json["route"]["explored"] == true {
            explored += 1;
        }
    }
    let calls = f64::from(n + 40);
    let sd = (calls * share * (1.0 - share)).sqrt();
    let explored = f64::from(explored);
    assert!(
        explored <= calls * share + 4.0 * sd,
        "{explored} of {calls} explored"
    );
    assert!(
        explored >= calls * share - 4.0 * sd,
        "{explored} of {calls} explored"
    );
    assert_eq!(explorations(&fleet).await, explored);
    fleet.stop().await;
}
