//! HTTP surface of the embed function: `POST /` (the fleet's own shape) and
//! `POST /v1/embeddings` (OpenAI's).

use bytes::Bytes;
use faas_runtime::{Body, Handler, RequestContext, error_response, json_response};
use http::{Method, Request, Response, StatusCode};
use routing_core::api::{EmbedFunctionRequest, parse_json};

use crate::embedder::Embedder;
use crate::error::EmbedError;
use crate::openai::{EmbeddingsRequest, EmbeddingsResponse};

/// Serves `POST /` with `{"input": "text" | ["text", ...]}` and `POST /v1/embeddings`.
pub(crate) struct EmbedHandler {
    embedder: Embedder,
}

impl EmbedHandler {
    /// Wraps the embedder.
    pub(crate) fn new(embedder: Embedder) -> Self {
        Self { embedder }
    }

    async fn native(&self, body: &[u8], call_id: &str) -> Result<Response<Body>, EmbedError> {
        let request: EmbedFunctionRequest = parse_json(body)?;
        let answer = self.embedder.embed(request.input, call_id).await?;
        Ok(json_response(StatusCode::OK, &answer))
    }

    async fn openai(&self, body: &[u8], call_id: &str) -> Result<Response<Body>, EmbedError> {
        let request = EmbeddingsRequest::parse(body)?;
        request.check(
            |name| self.embedder.serves_model(name),
            self.embedder.model(),
            self.embedder.dimensions(),
        )?;
        let answer = self.embedder.embed(request.input, call_id).await?;
        Ok(json_response(
            StatusCode::OK,
            &EmbeddingsResponse::from(answer),
        ))
    }
}

impl Handler for EmbedHandler {
    async fn handle(&self, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
        let result = match (req.method(), req.uri().path()) {
            (&Method::POST, "/") => self.native(req.body(), &cx.call_id).await,
            (&Method::POST, "/v1/embeddings") => self.openai(req.body(), &cx.call_id).await,
            (method, path) => Err(EmbedError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        };
        result.unwrap_or_else(|e| error_response(e.status(), &e.detail()))
    }
}
