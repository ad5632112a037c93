//! Calling a [`Handler`] in-process, as the runtime would, for a function's
//! own tests (the `testing` feature; functions take it as a dev-dependency).

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::{Handler, RequestContext};

/// Calls `handler` with a JSON request to `path`, as the runtime does once
/// it has read the body; returns the status and the JSON answer.
///
/// Panics (failing the test) when the answer is not JSON.
pub async fn call(
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
        .unwrap_or_else(|e| panic!("{path}: not a valid request: {e}"));
    let cx = RequestContext {
        call_id: "handler-test".to_owned(),
        received_at: Instant::now(),
    };
    let response = handler.handle(request, cx).await;
    let status = response.status();
    let bytes = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => panic!("{status}: the body broke off: {e}"),
    };
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// Asserts an error answer: its status, a JSON error with a type, the field
/// in `param` and a message that mentions `mentions`.
pub fn assert_error(
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
