//! Embeddings through the whole chain with the local model (stack.yml's default backend):
//! caller → dev gateway → llm-router → embed, and the embed function's OpenAI endpoint through
//! the gateway. Nothing reaches Ollama or any other provider.

mod embed_support;

use std::collections::BTreeMap;

use embed_support::{assert_matches_reference, model_dir, reference, vector};
use fleet_tests::{Fleet, FleetOptions};
use serde_json::{Value, json};

async fn local_fleet() -> Fleet {
    Fleet::start(FleetOptions {
        env: BTreeMap::from([
            ("EMBED_BACKEND".to_owned(), "local".to_owned()),
            (
                "EMBED_MODEL_DIR".to_owned(),
                model_dir().display().to_string(),
            ),
        ]),
        ..FleetOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_embed_is_answered_by_the_local_model() {
    let fleet = local_fleet().await;
    let (sentences, expected) = reference();
    let picked = [0usize, 17, 42, 63];
    let input: Vec<&str> = picked.iter().map(|&i| sentences[i].as_str()).collect();
    let answer = fleet
        .route(json!({"task":"embed","input":input,"max_latency_ms":20000,"private":true}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["provider"], "local");
    assert_eq!(answer.json["model"], "all-MiniLM-L6-v2");
    let got: Vec<Vec<f32>> = answer.json["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(vector)
        .collect();
    let want: Vec<Vec<f32>> = picked.iter().map(|&i| expected[i].clone()).collect();
    assert_matches_reference(&got, &want);
    assert!(answer.json["usage"]["input_tokens"].as_u64().unwrap() >= 4 * 3);
    assert_eq!(fleet.provider_requests(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embed_function_s_openai_endpoint_works_through_the_gateway() {
    let fleet = local_fleet().await;
    let response = fleet
        .http
        .post(fleet.url("embed", "/v1/embeddings"))
        .header("content-type", "application/json")
        .body(r#"{"model":"all-MiniLM-L6-v2","input":["hello world","the cat sat"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["usage"]["prompt_tokens"], 9);
    // An empty text is the caller's mistake, not the model's.
    let answer = fleet.post("embed", r#"{"input":["ok",""]}"#).await;
    assert_eq!(answer.status, 400, "{}", answer.json);
    assert_eq!(answer.json["error"]["param"], "input[1]");
    assert_eq!(fleet.provider_requests(), 0);
    fleet.stop().await;
}
