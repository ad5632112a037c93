//! The whole chain: caller → dev gateway → llm-router → classify / embed /
//! provider-proxy → provider emulators, with real function processes.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use fleet_tests::{Fleet, FleetOptions};
use provider_emulator::StatsSnapshot;
use serde_json::{Value, json};

fn chat_requests(stats: &StatsSnapshot) -> u64 {
    stats
        .by_path
        .iter()
        .filter(|(path, _)| !path.starts_with("/_emulator") && !path.ends_with("/token"))
        .map(|(_, n)| n)
        .sum()
}

fn tokens(answer: &Value, field: &str) -> f64 {
    answer["usage"][field].as_u64().expect("usage field") as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_generate_goes_to_groq_and_is_priced_from_its_usage() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let answer = fleet
        .route(json!({"task":"generate","prompt":"hi","max_latency_ms":200}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let body = &answer.json;
    assert_eq!(body["provider"], "groq");
    assert_eq!(body["model"], "llama-3.1-8b-instant");
    assert!(!body["output"].as_str().unwrap().is_empty());
    assert_eq!(body["route"]["rule"], "fast_budget");
    let expected =
        tokens(body, "input_tokens") * 0.05 / 1e6 + tokens(body, "output_tokens") * 0.08 / 1e6;
    let cost = body["cost_usd"].as_f64().unwrap();
    assert!(
        cost > 0.0 && (cost - expected).abs() < 1e-12,
        "{cost} vs {expected}"
    );
    assert_eq!(chat_requests(&fleet.groq.stats()), 1);
    assert_eq!(chat_requests(&fleet.vertex.stats()), 0);
    assert_eq!(chat_requests(&fleet.ollama.stats()), 0);

    // The cost is exported by provider-proxy.
    let metrics = fleet
        .http
        .get(fleet.url("provider-proxy", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Exactly the answer's cost, under the model's own label.
    let series = r#"llm_token_cost_usd_total{model="llama-3.1-8b-instant",provider="groq",task="generate"} "#;
    let exported: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
        .parse()
        .unwrap();
    assert!((exported - cost).abs() < 1e-12, "{exported} vs {cost}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_requests_are_served_in_cluster_and_never_reach_external_providers() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let marker = "private-marker-4f1c9e";
    for (task, budget) in [("generate", 200), ("reason", 5000), ("classify", 100)] {
        let answer = fleet
            .route(json!({"task":task,"prompt":format!("{marker} summarise my records"),"max_latency_ms":budget,"private":true}))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert_eq!(answer.json["provider"], "ollama");
        assert_eq!(answer.json["model"], "llama3.2");
        assert_eq!(answer.json["cost_usd"], 0.0);
    }
    let ollama = fleet.ollama.stats();
    assert!(ollama.any_body_contains(marker));
    for external in [fleet.groq.stats(), fleet.vertex.stats()] {
        assert_eq!(chat_requests(&external), 0, "{external:?}");
        assert!(!external.any_body_contains(marker));
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_go_to_vertex_with_a_service_account_token() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let answer = fleet
        .route(json!({"task":"reason","prompt":"Why is the sky blue?","max_latency_ms":5000,"difficulty":"medium"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let body = &answer.json;
    assert_eq!(body["provider"], "vertex");
    assert_eq!(body["model"], "gemini-2.5-flash");
    let expected = (tokens(body, "input_tokens") - tokens(body, "cached_input_tokens")) * 0.30
        / 1e6
        + tokens(body, "cached_input_tokens") * 0.03 / 1e6
        + tokens(body, "output_tokens") * 2.50 / 1e6;
    let cost = body["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    let vertex = fleet.vertex.stats();
    assert_eq!(vertex.path_count("/token"), 1, "{vertex:?}");
    assert_eq!(chat_requests(&fleet.groq.stats()), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_computed_in_cluster_through_the_embed_function() {
    // The Ollama backend; embed_fleet.rs covers stack.yml's default, the local model.
    let fleet = Fleet::start(FleetOptions {
        env: [("EMBED_BACKEND".to_owned(), "ollama".to_owned())].into(),
        ..FleetOptions::default()
    })
    .await;
    let answer = fleet
        .route(json!({"task":"embed","input":["a sentence","another one"],"max_latency_ms":2000}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let vectors = answer.json["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].as_array().unwrap().len(), 384);
    assert_eq!(answer.json["provider"], "ollama");
    assert_eq!(fleet.ollama.stats().path_count("/api/embed"), 1);
    assert_eq!(
        chat_requests(&fleet.groq.stats()) + chat_requests(&fleet.vertex.stats()),
        0
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_omitted_task_is_decided_by_classify_and_the_call_id_is_kept() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let response = fleet
        .http
        .post(fleet.url("llm-router", ""))
        .header("X-Call-Id", "chain-call-123")
        .body(json!({"prompt":"Classify the sentiment of this review: great phone","max_latency_ms":250}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "chain-call-123");
    assert_eq!(body["task"], "classify");
    assert!(
        body["route"]["reason"]
            .as_str()
            .unwrap()
            .contains("decided by classify"),
        "{body}"
    );
    assert_eq!(body["provider"], "groq");
    let functions = fleet.gateway.functions();
    let classify = functions.iter().find(|f| f.name == "classify").unwrap();
    assert_eq!(classify.invocation_count, 1);
    fleet.stop().await;
}
