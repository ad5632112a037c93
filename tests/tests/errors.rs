//! Bad input and missing configuration get clear JSON errors with the right
//! status, through the whole chain.

use fleet_tests::{Fleet, FleetOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_400_naming_the_field() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let cases = [
        (
            r#"{"task":"generate","prompt":"hi","max_latency_ms":"soon"}"#,
            Some("max_latency_ms"),
        ),
        (r#"{"task":"summarise","prompt":"hi"}"#, Some("task")),
        (r#"{"task":"generate"}"#, Some("prompt")),
        (
            r#"{"task":"generate","prompt":"hi","privat":true}"#,
            Some("privat"),
        ),
        (r#"{"task":"generate","prompt":"#, None),
    ];
    for (body, field) in cases {
        let answer = fleet.post("llm-router", body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.json);
        assert_eq!(answer.json["error"]["type"], "invalid_request_error");
        assert_eq!(answer.json["error"]["param"].as_str(), field, "{body}");
        assert!(!answer.json["error"]["message"].as_str().unwrap().is_empty());
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_whether_sized_or_chunked() {
    let limit = 64 * 1024;
    let fleet = Fleet::start(FleetOptions {
        env: [("MAX_BODY_BYTES".to_owned(), limit.to_string())].into(),
        ..FleetOptions::default()
    })
    .await;
    let prompt = "x".repeat(limit + 1);
    let body = json!({"task":"generate","prompt":prompt}).to_string();

    let sized = fleet.post("llm-router", body.clone()).await;
    assert_eq!(sized.status, 413, "{}", sized.json);
    assert_eq!(sized.json["error"]["type"], "request_too_large");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let chunked = fleet
        .http
        .post(fleet.url("llm-router", ""))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);

    // A body under the limit still works.
    let ok = fleet
        .route(json!({"task":"generate","prompt":"x".repeat(limit / 2),"max_latency_ms":200}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_named_in_a_503_and_the_router_falls_back() {
    let fleet = Fleet::start(FleetOptions {
        omit_secrets: vec!["groq-api-key".to_owned()],
        ..FleetOptions::default()
    })
    .await;
    // provider-proxy names the missing secret.
    let direct = fleet
        .post(
            "provider-proxy",
            json!({"provider":"groq","model":"llama-3.1-8b-instant","task":"generate",
                   "messages":[{"role":"user","content":"hi"}]})
            .to_string(),
        )
        .await;
    assert_eq!(direct.status, 503, "{}", direct.json);
    assert_eq!(direct.json["error"]["type"], "not_configured");
    let message = direct.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("groq-api-key"), "{message}");

    // Pinned to Groq, the router has nowhere else to go and says why.
    let pinned = fleet
        .route(json!({"task":"generate","prompt":"hi","max_latency_ms":200,"model":"groq/llama-3.1-8b-instant"}))
        .await;
    assert_eq!(pinned.status, 503, "{}", pinned.json);
    assert!(
        pinned.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("groq-api-key")
    );

    // Routed, it falls back along the decision's chain and says so.
    let routed = fleet
        .route(json!({"task":"generate","prompt":"hi","max_latency_ms":200}))
        .await;
    assert_eq!(routed.status, 200, "{}", routed.json);
    assert_ne!(routed.json["provider"], "groq");
    let attempts = routed.json["route"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["model"], "groq/llama-3.1-8b-instant");
    assert_ne!(attempts[0]["outcome"], "ok");
    assert_eq!(attempts.last().unwrap()["outcome"], "ok");
    assert_eq!(fleet.groq.stats().total_requests, 0);

    let secret =
        std::fs::read_to_string(fleet.secrets_dir().join("vertex-service-account")).unwrap();
    let key_line = secret
        .lines()
        .find(|l| l.contains("private_key\""))
        .unwrap()
        .to_owned();
    assert!(!routed.json.to_string().contains(&key_line));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_get_a_json_404() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let response = fleet
        .http
        .post(fleet.url("llm-router", "/no/such/path"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found");
    fleet.stop().await;
}
