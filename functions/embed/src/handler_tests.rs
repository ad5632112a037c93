//! The embed handler in-process over the local model (functions/embed/assets/model,
//! fetched by scripts/fetch-model.sh): real requests, no server.

use std::time::Instant;

use bytes::Bytes;
use faas_runtime::{Handler, RequestContext};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;

/// Calls `handler` with a real request, as the runtime would after reading
/// the body; returns the status and the JSON body.
async fn call(
    handler: &impl Handler,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body.to_owned()))
        .unwrap();
    let cx = RequestContext {
        call_id: "handler-test".to_owned(),
        received_at: Instant::now(),
    };
    let response = handler.handle(request, cx).await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// Asserts an error answer: its status, a JSON error with a type, the
/// field in `param` and a message that mentions `mentions`.
fn assert_error(
    answer: &(StatusCode, Value),
    status: StatusCode,
    param: Option<&str>,
    mentions: &str,
) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let error = &body["error"];
    assert!(
        error["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(mentions)),
        "{body}"
    );
    assert_eq!(error["param"].as_str(), param, "{body}");
}

/// At most this many texts per request, so that a 413 is cheap to reach.
const MAX_INPUTS: usize = 2;

async fn handler() -> crate::handler::EmbedHandler {
    let model_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/model");
    let max_inputs = MAX_INPUTS.to_string();
    let env = routing_core::env::Env::from_pairs([
        ("EMBED_BACKEND", "local"),
        ("EMBED_MODEL_DIR", model_dir),
        ("EMBED_MAX_INPUTS", max_inputs.as_str()),
    ]);
    let config = crate::config::EmbedConfig::from_env(&env).unwrap();
    let registry = prometheus::Registry::new();
    let embedder = crate::embedder::Embedder::new(config, &env, &registry)
        .await
        .unwrap();
    crate::handler::EmbedHandler::new(embedder)
}

fn unit_length(vector: &Value) -> bool {
    let vector = vector.as_array().unwrap();
    let norm: f64 = vector
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    vector.len() == 384 && (norm - 1.0).abs() < 1e-3
}

#[tokio::test]
async fn texts_get_one_vector_each_in_both_shapes() {
    let handler = handler().await;
    let (status, body) = call(
        &handler,
        Method::POST,
        "/",
        r#"{"input":["a cat","a dog"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["provider"], "local", "{body}");
    let vectors = body["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    assert!(vectors.iter().all(unit_length), "{body}");
    assert_ne!(vectors[0], vectors[1]);

    let (status, body) = call(
        &handler,
        Method::POST,
        "/v1/embeddings",
        r#"{"input":"a cat","encoding_format":"float"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list", "{body}");
    assert_eq!(body["data"][0]["index"], 0, "{body}");
    assert!(unit_length(&body["data"][0]["embedding"]), "{body}");
    assert_eq!(body["data"][0]["embedding"], vectors[0]);
}

#[tokio::test]
async fn bad_inputs_are_400_naming_the_field_and_too_many_413() {
    let handler = handler().await;
    for (path, body, status, param, mentions) in [
        ("/", r#"{"input":[]}"#, 400, Some("input"), "non-empty"),
        ("/", r#"{"input":["a",""]}"#, 400, Some("input[1]"), "empty"),
        ("/", r#"{"input":42}"#, 400, Some("input"), "string"),
        ("/", r#"{"input":"#, 400, None, "invalid JSON"),
        ("/", "", 400, None, "empty"),
        (
            "/",
            r#"{"input":["a","b","c"]}"#,
            413,
            Some("input"),
            "at most 2",
        ),
        (
            "/v1/embeddings",
            r#"{"input":"a","model":"gpt-x"}"#,
            400,
            Some("model"),
            "gpt-x",
        ),
        (
            "/v1/embeddings",
            r#"{"input":"a","encoding_format":"base64"}"#,
            400,
            Some("encoding_format"),
            "base64",
        ),
        (
            "/v1/embeddings",
            r#"{"input":"a","dimensions":12}"#,
            400,
            Some("dimensions"),
            "384",
        ),
        (
            "/v1/embeddings",
            r#"{"input":["a","b","c"]}"#,
            413,
            Some("input"),
            "at most 2",
        ),
    ] {
        let answer = call(&handler, Method::POST, path, body).await;
        let status = StatusCode::from_u16(status).unwrap();
        assert_error(&answer, status, param, mentions);
    }
}

#[tokio::test]
async fn other_paths_and_methods_are_404() {
    let handler = handler().await;
    for (method, path) in [(Method::GET, "/"), (Method::POST, "/v1/embed")] {
        let answer = call(&handler, method, path, r#"{"input":"a"}"#).await;
        assert_error(&answer, StatusCode::NOT_FOUND, None, path);
    }
}
