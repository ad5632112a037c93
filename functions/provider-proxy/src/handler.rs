//! HTTP surface of provider-proxy.

use std::sync::Arc;

use bytes::Bytes;
use faas_runtime::access::{self, Field};
use faas_runtime::{Body, Handler, RequestContext, error_response, json_response, sse_response};
use http::header::{HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use routing_core::failure::FAILURE_CLASS_HEADER;
use serde_json::json;

use crate::proxy::{Proxy, ProxyError};

/// Serves `POST /` (a normalised chat request, streamed as server-sent
/// events when it says `"stream": true`) and `GET /providers`.
pub(crate) struct ProxyHandler {
    proxy: Arc<Proxy>,
}

impl ProxyHandler {
    /// Wraps the proxy state.
    pub(crate) fn new(proxy: Proxy) -> Self {
        Self {
            proxy: Arc::new(proxy),
        }
    }

    async fn chat(&self, body: &[u8], call_id: &str) -> Result<Response<Body>, ProxyError> {
        let prepared = self.proxy.prepare(body)?;
        if prepared.stream {
            let frames = self.proxy.chat_stream(prepared, call_id).await?;
            return Ok(sse_response(frames));
        }
        let answer = self.proxy.chat(prepared, call_id).await?;
        access::record(Field::Provider, answer.provider.as_str());
        access::record(Field::Model, answer.model.as_str());
        access::record(Field::InputTokens, answer.usage.input_tokens);
        access::record(Field::OutputTokens, answer.usage.output_tokens);
        if let Some(cost) = answer.cost_usd {
            access::record(Field::CostUsd, cost);
        }
        tracing::debug!(
            call_id,
            provider = %answer.provider,
            model = %answer.model,
            input_tokens = answer.usage.input_tokens,
            output_tokens = answer.usage.output_tokens,
            latency_ms = answer.latency_ms,
            "provider call served"
        );
        Ok(json_response(StatusCode::OK, &answer))
    }
}

impl Handler for ProxyHandler {
    async fn handle(&self, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::POST, "/") => self.chat(req.body(), &cx.call_id).await,
            (&Method::GET, "/providers") => Ok(json_response(
                StatusCode::OK,
                &json!({ "providers": self.proxy.listing(), "pools": self.proxy.pool_listing() }),
            )),
            (method, path) => Err(ProxyError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        result.unwrap_or_else(|e| error(&e))
    }
}

/// The error response, with `Retry-After` (whole seconds, rounded up) when
/// the provider asked for a wait.
fn error(e: &ProxyError) -> Response<Body> {
    let detail = e.detail();
    let mut response = error_response(e.status(), &detail);
    if let Some(failure) = detail.failure {
        response.headers_mut().insert(
            FAILURE_CLASS_HEADER,
            HeaderValue::from_static(failure.class.as_str()),
        );
    }
    if let Some(wait) = e.retry_after() {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}
