//! HTTP surface of llm-router.

use bytes::Bytes;
use faas_runtime::{Body, CallContext, Handler, json_error, json_response};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::error::RouterError;
use crate::router::{Call, Router};

/// Serves `POST /` (the native routing request) and `GET /` (what this is).
pub struct RouterHandler {
    router: Router,
}

impl RouterHandler {
    /// Wraps a router.
    pub fn new(router: Router) -> Self {
        Self { router }
    }
}

impl Handler for RouterHandler {
    async fn handle(&self, req: Request<Bytes>, cx: CallContext) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::POST, "/") => {
                let call = Call {
                    id: &cx.call_id,
                    received_at: cx.received_at.into(),
                };
                self.router.route(req.body(), &call).await
            }
            (&Method::GET, "/") => {
                return json_response(
                    StatusCode::OK,
                    &json!({
                        "function": "llm-router",
                        "version": env!("CARGO_PKG_VERSION"),
                        "usage": "POST / with {\"task\":\"generate\",\"prompt\":\"...\",\"max_latency_ms\":300,\"private\":false}",
                    }),
                );
            }
            (method, path) => Err(RouterError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        match result {
            Ok(answer) => {
                tracing::info!(
                    call_id = %cx.call_id,
                    task = %answer.task,
                    provider = %answer.provider,
                    model = %answer.model,
                    latency_ms = answer.latency_ms,
                    "routed"
                );
                json_response(StatusCode::OK, &answer)
            }
            Err(e) => {
                let detail = e.detail();
                tracing::info!(call_id = %cx.call_id, status = e.status().as_u16(), error = e.metric_label(), "request failed");
                json_error(
                    e.status(),
                    &detail.kind,
                    &detail.message,
                    detail.param.as_deref(),
                )
            }
        }
    }
}
