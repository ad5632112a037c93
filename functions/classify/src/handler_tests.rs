//! The classify handler in-process: real requests, no server.

use faas_runtime::testing::{assert_error, call};
use http::{Method, StatusCode};

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
