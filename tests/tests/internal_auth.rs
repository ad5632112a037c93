//! Functions that spend money or hold secrets answer only the fleet:
//! classify, embed and provider-proxy refuse any call without the fleet's
//! internal token, while llm-router, the fleet's front door, carries it on.

use fleet_tests::{Fleet, FleetOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_functions_refuse_callers_without_the_fleet_token() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let calls = [
        (
            "provider-proxy",
            "",
            json!({"provider":"anthropic","model":"claude-opus-4-1","task":"generate",
            "messages":[{"role":"user","content":"spend money"}],"max_tokens":4000}),
        ),
        ("classify", "", json!({"text":"hello"})),
        ("embed", "", json!({"input":["hello"]})),
        (
            "embed",
            "/v1/embeddings",
            json!({"model":"all-MiniLM-L6-v2","input":["hello"]}),
        ),
    ];
    for (function, path, body) in &calls {
        for token in [None, Some("not-the-token"), Some("")] {
            let mut request = fleet.outsider.post(fleet.url(function, path)).json(body);
            if let Some(token) = token {
                request = request.header("X-Fleet-Token", token);
            }
            let response = request.send().await.expect("gateway answers");
            assert_eq!(response.status(), 401, "{function}{path} with {token:?}");
            let error: Value = response.json().await.expect("a JSON error");
            assert_eq!(error["error"]["type"], "unauthorized", "{error}");
            assert!(
                !error.to_string().contains(&fleet.internal_token),
                "{error}"
            );
        }
    }
    assert_eq!(
        fleet.provider_requests(),
        0,
        "a refused call reached a provider"
    );

    // The fleet's own calls carry the token.
    for (function, path, body) in &calls[1..] {
        let response = fleet
            .http
            .post(fleet.url(function, path))
            .json(body)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 200, "{function}{path}");
    }
    // llm-router answers anyone (it authenticates its callers itself) and
    // reaches the internal functions on their behalf.
    let routed = fleet
        .outsider
        .post(fleet.url("llm-router", ""))
        .json(&json!({"task":"generate","prompt":"hi","max_latency_ms":5000}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(routed.status(), 200);
    assert_eq!(fleet.provider_requests(), 1);
    // Probes and scrapes need no token.
    let metrics = fleet
        .outsider
        .get(fleet.url("provider-proxy", "/metrics"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(metrics.status(), 200);
    fleet.stop().await;
}
