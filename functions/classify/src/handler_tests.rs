//! The classify handler in-process: real requests, no server.

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

fn handler() -> (crate::handler::ClassifyHandler, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let handler = crate::handler::ClassifyHandler::new(&registry).unwrap();
    (handler, registry)
}

#[tokio::test]
async fn a_text_gets_a_task_and_a_difficulty_and_is_counted() {
    let (handler, registry) = handler();
    let (status, body) = call(
        &handler,
        Method::POST,
        "/",
        r#"{"text":"Write a Rust function that parses a CSV file"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["task"].is_string(), "{body}");
    assert!(body["difficulty"].is_string(), "{body}");
    let counted: u64 = registry
        .gather()
        .iter()
        .filter(|family| family.name() == "classify_verdicts_total")
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum();
    assert_eq!(counted, 1);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let (handler, _) = handler();
    for (body, param, mentions) in [
        // A missing field is named in the message only.
        (r#"{}"#, None, "`text`"),
        (r#"{"text":42}"#, Some("text"), "integer"),
        (r#"{"text":"#, None, "invalid JSON"),
        ("", None, "empty"),
        ("[]", None, "JSON object"),
    ] {
        let answer = call(&handler, Method::POST, "/", body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, param, mentions);
    }
}

#[tokio::test]
async fn other_paths_and_methods_are_404() {
    let (handler, _) = handler();
    for (method, path) in [(Method::GET, "/"), (Method::POST, "/classify")] {
        let answer = call(&handler, method, path, r#"{"text":"hi"}"#).await;
        assert_error(&answer, StatusCode::NOT_FOUND, None, path);
    }
}
