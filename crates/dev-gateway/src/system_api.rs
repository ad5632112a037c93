//! The provider routes the local gateway answers itself: `/system/functions`,
//! `/system/function/<name>`, `/system/scale-function/<name>` and `/healthz`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::Error;
use crate::proxy::GatewayBody;
use crate::registry::{FunctionStatus, Registry};

const SCALE_BODY_LIMIT: usize = 64 * 1024;

/// Body of `POST /system/scale-function/<name>` (faas-provider `ScaleServiceRequest`).
#[derive(Debug, Deserialize)]
struct ScaleRequest {
    replicas: u64,
}

/// Answers a `/system/...` or `/healthz` request, or `None` when the path is
/// not one of them.
pub(crate) async fn handle(
    registry: &Arc<Registry>,
    method: &Method,
    path: &str,
    body: Incoming,
) -> Option<Response<GatewayBody>> {
    if path == "/healthz" {
        return Some(only(method, &[Method::GET, Method::HEAD], || {
            text(StatusCode::OK, "OK")
        }));
    }
    if path == "/system/functions" {
        return Some(only(method, &[Method::GET], || {
            let list: Vec<FunctionStatus> = registry.slots().map(|slot| slot.status()).collect();
            json(&list)
        }));
    }
    if let Some(name) = path.strip_prefix("/system/function/") {
        return Some(only(method, &[Method::GET], || match registry.get(name) {
            Ok(slot) => json(&slot.status()),
            Err(error) => error_response(&error),
        }));
    }
    if let Some(name) = path.strip_prefix("/system/scale-function/") {
        if method != Method::POST {
            return Some(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
        }
        let slot = match registry.get(name) {
            Ok(slot) => slot,
            Err(error) => return Some(error_response(&error)),
        };
        let bytes = match Limited::new(body, SCALE_BODY_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Some(text(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read body: {e}"),
                ));
            }
        };
        let request: ScaleRequest = match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(e) => {
                return Some(text(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid scale request: {e}"),
                ));
            }
        };
        return Some(match registry.scale(slot, request.replicas).await {
            Ok(()) => empty(StatusCode::ACCEPTED),
            Err(error) => error_response(&error),
        });
    }
    None
}

fn only(
    method: &Method,
    allowed: &[Method],
    respond: impl FnOnce() -> Response<GatewayBody>,
) -> Response<GatewayBody> {
    if allowed.contains(method) {
        respond()
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<GatewayBody> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(body.to_owned()),
    )
}

/// The response for a failed request: its status and message.
pub(crate) fn error_response(error: &Error) -> Response<GatewayBody> {
    text(error.status_code(), &error.to_string())
}

fn empty(status: StatusCode) -> Response<GatewayBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn json(value: &impl serde::Serialize) -> Response<GatewayBody> {
    match serde_json::to_vec(value) {
        Ok(bytes) => respond(StatusCode::OK, "application/json", Bytes::from(bytes)),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<GatewayBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn full(bytes: Bytes) -> GatewayBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
