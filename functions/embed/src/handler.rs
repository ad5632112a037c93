//! HTTP surface of the embed function.

use bytes::Bytes;
use faas_runtime::{Body, CallContext, Handler, json_error, json_response};
use http::{Method, Request, Response, StatusCode};

use crate::embedder::{EmbedError, Embedder};

/// Serves `POST /` with `{"input": "text" | ["text", ...]}`.
pub struct EmbedHandler {
    embedder: Embedder,
}

impl EmbedHandler {
    /// Wraps the embedder.
    pub fn new(embedder: Embedder) -> Self {
        Self { embedder }
    }
}

impl Handler for EmbedHandler {
    async fn handle(&self, req: Request<Bytes>, cx: CallContext) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::POST, "/") => self.embedder.embed(req.body(), &cx.call_id).await,
            (method, path) => Err(EmbedError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        match result {
            Ok(answer) => json_response(StatusCode::OK, &answer),
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
