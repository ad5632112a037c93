use provider_emulator::{EmulatorConfig, Fault, FaultPlan, ProviderFlavor};
use serde_json::{Value, json};

use crate::common::{client, raw_exchange, raw_post, read_all, start};

fn config() -> EmulatorConfig {
    EmulatorConfig::instant(ProviderFlavor::Ollama)
}

#[tokio::test]
async fn root_version_and_tags() {
    let emu = start(config()).await;
    let base = emu.base_url();
    assert_eq!(base, emu.root_url());
    let c = client();
    let root = c.get(&base).send().await.unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.text().await.unwrap(), "Ollama is running");
    let version: Value = c
        .get(format!("{base}/api/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(version["version"].is_string());
    let tags: Value = c
        .get(format!("{base}/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"llama3.2:latest"));
    assert_eq!(tags["models"][0]["details"]["format"], "gguf");
    assert_eq!(
        c.head(format!("{base}/api/tags"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn chat_non_stream_reports_usage_and_is_deterministic() {
    let emu = start(config()).await;
    let url = format!("{}/api/chat", emu.base_url());
    let body = json!({"model":"llama3.2","messages":[{"role":"user","content":"why is the sky blue?"}],"stream":false});
    let resp = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let first: Value = resp.json().await.unwrap();
    assert_eq!(first["model"], "llama3.2");
    assert_eq!(first["done"], true);
    assert_eq!(first["done_reason"], "stop");
    assert_eq!(first["message"]["role"], "assistant");
    let text = first["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    assert!(first["prompt_eval_count"].as_u64().unwrap() > 0);
    assert!(first["eval_count"].as_u64().unwrap() > 0);
    assert!(first["eval_duration"].as_u64().unwrap() > 0);
    assert!(
        first["load_duration"].as_u64().unwrap() > 0,
        "first use loads the model"
    );

    // Same prompt again: same words, model warm, prompt fully cached, so
    // those zero metrics are omitted as Go's omitempty does.
    let second: Value = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["message"]["content"], first["message"]["content"]);
    assert!(second.get("load_duration").is_none());
    assert!(second.get("prompt_eval_count").is_none());
    assert!(second.get("prompt_eval_duration").is_none());
    assert_eq!(second["eval_count"], first["eval_count"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn chat_streams_ndjson_by_default_with_metrics_only_at_the_end() {
    let emu = start(config()).await;
    let resp = client()
        .post(format!("{}/api/chat", emu.base_url()))
        .json(&json!({"model":"llama3.2:latest","messages":[{"role":"user","content":"hello"}],"options":{"num_predict":5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let body = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    assert!(body.ends_with('\n'));
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "5 tokens then the done line");
    for line in &lines[..5] {
        assert_eq!(line["done"], false);
        assert!(line.get("eval_count").is_none());
    }
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["message"]["content"], "");
    assert_eq!(last["eval_count"], 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn generate_returns_response_and_context() {
    let emu = start(config()).await;
    let resp: Value = client()
        .post(format!("{}/api/generate", emu.base_url()))
        .json(&json!({"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!resp["response"].as_str().unwrap().is_empty());
    assert!(!resp["context"].as_array().unwrap().is_empty());
    assert_eq!(resp["done"], true);
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_model_is_404_in_ollamas_words() {
    let emu = start(config()).await;
    let resp = client()
        .post(format!("{}/api/chat", emu.base_url()))
        .json(&json!({"model":"nonesuch","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error":"model 'nonesuch' not found"})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn embed_vectors_are_normalised_with_configurable_dimensions() {
    let mut cfg = config();
    cfg.embedding_dimensions = 64;
    let emu = start(cfg).await;
    let url = format!("{}/api/embed", emu.base_url());
    let resp: Value = client()
        .post(&url)
        .json(&json!({"model":"all-minilm","input":["Why is the sky blue?","Why is the grass green?"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vectors = resp["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for v in vectors {
        let v: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 64);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3);
    }
    assert!(resp["prompt_eval_count"].as_u64().unwrap() > 0);
    let sized: Value = client()
        .post(&url)
        .json(&json!({"model":"all-minilm","input":"x","dimensions":8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sized["embeddings"][0].as_array().unwrap().len(), 8);
    let too_long = client()
        .post(&url)
        .json(&json!({"model":"all-minilm","input":"word ".repeat(1000),"truncate":false}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    assert_eq!(
        too_long.json::<Value>().await.unwrap()["error"],
        "the input length exceeds the context length"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn mid_stream_error_stays_on_a_200() {
    let emu = start(config()).await;
    let resp = client()
        .post(format!("{}/api/chat", emu.base_url()))
        .json(&json!({"model":"llama3.2","messages":[{"role":"user","content":"tell me [[emulator:stream_error]]"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(
        last,
        json!({"error":"an error was encountered while running the model"})
    );
    assert_eq!(emu.stats().faults.get("stream_error"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn planned_faults_and_counters() {
    let emu = start(config().with_faults(FaultPlan::next_n(Fault::ServerError, 1))).await;
    let url = format!("{}/api/chat", emu.base_url());
    let body = json!({"model":"llama3.2","messages":[{"role":"user","content":"secret-marker-123"}],"stream":false});
    let first = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(first.status(), 500);
    assert!(
        first.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("llama runner")
    );
    let second = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(second.status(), 200);
    let stats = emu.stats();
    assert_eq!(stats.total_requests, 2);
    assert_eq!(stats.path_count("/api/chat"), 2);
    assert_eq!(stats.by_status.get(&500), Some(&1));
    assert!(stats.any_body_contains("secret-marker-123"));
    assert_eq!(stats.recent[0].fault, Some(Fault::ServerError));
    emu.reset();
    assert_eq!(emu.stats().total_requests, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn stream_cut_breaks_the_body() {
    let emu = start(config()).await;
    let resp = client()
        .post(format!("{}/api/chat", emu.base_url()))
        .json(&json!({"model":"llama3.2","messages":[{"role":"user","content":"[[emulator:stream_cut]]"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(read_all(resp).await.is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn connection_reset_drops_the_socket() {
    let emu = start(config()).await;
    let req = raw_post(
        "/api/chat",
        "",
        r#"{"model":"llama3.2","messages":[{"role":"user","content":"[[emulator:connection_reset]]"}]}"#,
    );
    let err = raw_exchange(emu.local_addr(), &req).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_clean_while_a_request_hangs() {
    let emu = start(config()).await;
    let url = format!("{}/api/chat", emu.base_url());
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .json(&json!({"model":"llama3.2","messages":[{"role":"user","content":"[[emulator:hang]]"}]}))
            .send()
            .await
    });
    emu.wait_for_requests(1).await;
    emu.shutdown().await;
    assert!(
        pending.await.unwrap().is_err(),
        "a hung request gets no answer"
    );
}
