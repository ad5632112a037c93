//! Building JSON responses, including OpenAI-shaped errors.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use tokio::sync::mpsc;

use crate::body::{Body, full, streaming};

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT_EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const X_ACCEL_BUFFERING: http::header::HeaderName =
    http::header::HeaderName::from_static("x-accel-buffering");
const NO: HeaderValue = HeaderValue::from_static("no");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// Body used when a value cannot be serialised; written by hand so it cannot fail itself.
const SERIALISATION_FAILED: &str = r#"{"error":{"message":"the response could not be serialised","type":"internal_error","param":null,"code":null}}"#;

/// A response with `status` and `value` serialised as JSON (`Content-Type: application/json`).
///
/// If `value` cannot be serialised (a map with non-string keys, a failing `Serialize` impl), the
/// failure is logged and the response is a 500 JSON error instead.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_content_type(status, APPLICATION_JSON, bytes),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise the JSON response");
            with_content_type(
                StatusCode::INTERNAL_SERVER_ERROR,
                APPLICATION_JSON,
                SERIALISATION_FAILED,
            )
        }
    }
}

/// An error response: `error` serialised under the key `"error"`, the shape
/// every function answers a failure with (OpenAI's when `error` has
/// `message`, `type`, `param` and `code`; a function may add fields).
///
/// `status` is a [`StatusCode`] or a `u16`; a number that is no HTTP status
/// becomes 500.
pub fn error_response(status: impl TryInto<StatusCode>, error: &impl Serialize) -> Response<Body> {
    let status = status
        .try_into()
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &ErrorEnvelope { error })
}

/// An OpenAI-shaped error response:
/// `{"error":{"message":…,"type":kind,"param":param|null,"code":null}}`.
pub fn json_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    param: Option<&str>,
) -> Response<Body> {
    error_response(
        status,
        &ErrorFields {
            message,
            kind,
            param,
            code: None,
        },
    )
}

/// A `200` server-sent events response (`Content-Type: text/event-stream`,
/// `Cache-Control: no-cache` and `X-Accel-Buffering: no`, which tells nginx
/// and the ingresses built on it not to buffer) whose body is every frame received on
/// `frames`, in order, sent as it arrives; it ends when every sender is
/// dropped. Each frame goes out as it is, so it should be whole events
/// (`data: …` and a blank line).
pub fn sse_response(frames: mpsc::Receiver<Bytes>) -> Response<Body> {
    let body = streaming(futures_util::stream::unfold(frames, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<Bytes, std::convert::Infallible>(frame), rx))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, TEXT_EVENT_STREAM);
    headers.insert(CACHE_CONTROL, NO_CACHE);
    headers.insert(X_ACCEL_BUFFERING, NO);
    response
}

/// A plain-text response, for the runtime's health endpoints.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    with_content_type(status, TEXT_PLAIN, text)
}

/// A response with an explicit content type.
pub(crate) fn with_content_type(
    status: StatusCode,
    content_type: HeaderValue,
    body: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

#[derive(Serialize)]
struct ErrorEnvelope<'a, T> {
    error: &'a T,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    async fn body_json(response: Response<Body>) -> Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("valid JSON")
    }

    #[tokio::test]
    async fn json_error_has_the_openai_shape() {
        let response = json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model is required",
            Some("model"),
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(response).await,
            json!({"error": {"message": "model is required", "type": "invalid_request_error", "param": "model", "code": null}})
        );
    }

    #[tokio::test]
    async fn json_error_without_param_has_null() {
        let response = json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "boom",
            None,
        );
        assert_eq!(
            body_json(response).await,
            json!({"error": {"message": "boom", "type": "internal_error", "param": null, "code": null}})
        );
    }

    #[tokio::test]
    async fn error_response_wraps_any_error_object() {
        let response = error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"message": "no", "type": "no_route", "rejected": []}),
        );
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(response).await,
            json!({"error": {"message": "no", "type": "no_route", "rejected": []}})
        );
    }

    #[tokio::test]
    async fn error_response_takes_a_numeric_status_and_falls_back_to_500() {
        let response = error_response(429u16, &json!({"type": "rate_limited"}));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let response = error_response(1000u16, &json!({"type": "odd"}));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn sse_response_streams_the_frames_until_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel(4);
        let response = sse_response(rx);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        tx.send(Bytes::from_static(b"data: 1\n\n"))
            .await
            .expect("receiver alive");
        tx.send(Bytes::from_static(b"data: [DONE]\n\n"))
            .await
            .expect("receiver alive");
        drop(tx);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("no error")
            .to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"data: 1\n\ndata: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn json_response_serialises_the_value() {
        let response = json_response(StatusCode::CREATED, &json!({"id": 7}));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(body_json(response).await, json!({"id": 7}));
    }

    #[tokio::test]
    async fn unserialisable_values_become_a_500_json_error() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), "tuple keys are not JSON object keys");
        let response = json_response(StatusCode::OK, &map);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_json(response).await["error"]["type"], "internal_error");
    }
}
