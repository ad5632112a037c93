//! The embed handler in-process over the local model (functions/embed/assets/model,
//! fetched by scripts/fetch-model.sh): real requests, no server.

use faas_runtime::testing::{assert_error, call};
use http::{Method, StatusCode};
use serde_json::Value;

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
