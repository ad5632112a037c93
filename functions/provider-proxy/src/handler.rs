//! HTTP surface of provider-proxy.

use bytes::Bytes;
use faas_runtime::{Body, CallContext, Handler, json_error, json_response};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::proxy::{Proxy, ProxyError};

/// Serves `POST /` (a normalised chat request) and `GET /providers`.
pub struct ProxyHandler {
    proxy: Proxy,
}

impl ProxyHandler {
    /// Wraps the proxy state.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

impl Handler for ProxyHandler {
    async fn handle(&self, req: Request<Bytes>, cx: CallContext) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::POST, "/") => self.proxy.chat(req.body(), &cx.call_id).await,
            (&Method::GET, "/providers") => {
                return json_response(
                    StatusCode::OK,
                    &json!({ "providers": self.proxy.listing() }),
                );
            }
            (method, path) => Err(ProxyError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        match result {
            Ok(answer) => {
                tracing::info!(
                    call_id = %cx.call_id,
                    provider = %answer.provider,
                    model = %answer.model,
                    input_tokens = answer.usage.input_tokens,
                    output_tokens = answer.usage.output_tokens,
                    latency_ms = answer.latency_ms,
                    "provider call served"
                );
                json_response(StatusCode::OK, &answer)
            }
            Err(e) => {
                let detail = e.detail();
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                json_error(
                    status,
                    &detail.kind,
                    &detail.message,
                    detail.param.as_deref(),
                )
            }
        }
    }
}
