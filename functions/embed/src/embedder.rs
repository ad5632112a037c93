//! Embeddings computed in the cluster. The backend is chosen by
//! `EMBED_BACKEND`; `ollama` calls the in-cluster Ollama `/api/embed`.

use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use routing_core::api::{
    EmbedFunctionRequest, EmbedFunctionResponse, ErrorDetail, InvalidRequest, MAX_EMBED_INPUTS,
    parse_json,
};
use routing_core::env::{DEFAULT_SECRETS_DIR, ENV_SECRETS_DIR, Env};
use routing_core::providers::{CallContext, EmbedRequest, Locality, ProviderError, Providers};
use routing_core::secrets::SecretStore;
use tokio::time::Instant;

/// `EMBED_BACKEND`: which backend computes the vectors.
pub const ENV_EMBED_BACKEND: &str = "EMBED_BACKEND";
/// `EMBED_MODEL`: the backend's model id.
pub const ENV_EMBED_MODEL: &str = "EMBED_MODEL";
/// `EMBED_TIMEOUT_MS`: the longest one backend call may take.
pub const ENV_EMBED_TIMEOUT_MS: &str = "EMBED_TIMEOUT_MS";

/// A failed embeddings request.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The backend failed.
    #[error("embedding backend: {0}")]
    Backend(ProviderError),
    /// The path or method is not served.
    #[error("{method} {path} is not served")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
}

impl EmbedError {
    /// HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            EmbedError::Invalid(_) => 400,
            EmbedError::Backend(e) => e.status(),
            EmbedError::NotFound { .. } => 404,
        }
    }

    /// JSON error body.
    pub fn detail(&self) -> ErrorDetail {
        match self {
            EmbedError::Invalid(e) => ErrorDetail {
                message: e.message.clone(),
                kind: "invalid_request_error".to_owned(),
                param: e.param.clone(),
                code: None,
            },
            EmbedError::Backend(e) => ErrorDetail {
                message: self.to_string(),
                kind: e.metric_label().to_owned(),
                param: None,
                code: None,
            },
            EmbedError::NotFound { .. } => ErrorDetail {
                message: self.to_string(),
                kind: "not_found".to_owned(),
                param: None,
                code: None,
            },
        }
    }
}

/// The embed function's state.
pub struct Embedder {
    providers: Providers,
    backend: String,
    model: String,
    timeout: Duration,
    texts: IntCounterVec,
}

impl Embedder {
    /// Reads the backend settings; refuses a backend outside the cluster.
    pub fn new(env: &Env, registry: &Registry) -> Result<Self, String> {
        let backend = env.get_or(ENV_EMBED_BACKEND, "ollama").to_owned();
        if backend != "ollama" {
            return Err(format!(
                "{ENV_EMBED_BACKEND}={backend:?} is not supported; use \"ollama\""
            ));
        }
        let secrets = SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        let http = routing_core::http::client().map_err(|e| e.to_string())?;
        let providers = Providers::from_env(env, &secrets, http).map_err(|e| e.to_string())?;
        match providers.get(&backend) {
            Some(p) if p.locality() == Locality::InCluster => {}
            Some(_) => return Err(format!("embedding backend {backend} is not in-cluster")),
            None => return Err(format!("embedding backend {backend} is not configured")),
        }
        let timeout_ms = env
            .parse_or(ENV_EMBED_TIMEOUT_MS, 30_000u64)
            .map_err(|e| e.to_string())?;
        let texts = IntCounterVec::new(
            Opts::new(
                "embed_texts_total",
                "Texts embedded, by backend and outcome.",
            ),
            &["backend", "outcome"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(texts.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            providers,
            backend,
            model: env.get_or(ENV_EMBED_MODEL, "all-minilm").to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            texts,
        })
    }

    /// Embeds the texts of one request body.
    pub async fn embed(
        &self,
        body: &[u8],
        call_id: &str,
    ) -> Result<EmbedFunctionResponse, EmbedError> {
        let request: EmbedFunctionRequest = parse_json(body)?;
        let inputs = request.input.unwrap_or_default();
        let invalid = |message: &str| InvalidRequest {
            param: Some("input".to_owned()),
            message: message.to_owned(),
        };
        if inputs.is_empty() {
            return Err(invalid("input must be a non-empty string or array of strings").into());
        }
        if inputs.len() > MAX_EMBED_INPUTS {
            return Err(invalid("too many inputs in one request").into());
        }
        if inputs.iter().any(|s| s.is_empty()) {
            return Err(invalid("inputs must not be empty strings").into());
        }
        let Some(provider) = self.providers.get(&self.backend) else {
            return Err(EmbedError::Backend(ProviderError::NotConfigured {
                provider: self.backend.clone(),
                reason: "backend missing".to_owned(),
            }));
        };
        let count = inputs.len() as u64;
        let cx = CallContext {
            call_id,
            deadline: Instant::now() + self.timeout,
        };
        let result = provider
            .embed(
                &EmbedRequest {
                    model: self.model.clone(),
                    inputs,
                },
                &cx,
            )
            .await;
        match result {
            Ok(answer) => {
                self.texts
                    .with_label_values(&[&self.backend, "ok"])
                    .inc_by(count);
                Ok(EmbedFunctionResponse {
                    provider: self.backend.clone(),
                    model: answer.model,
                    embeddings: answer.embeddings,
                    usage: answer.usage,
                })
            }
            Err(e) => {
                self.texts
                    .with_label_values(&[&self.backend, e.metric_label()])
                    .inc_by(count);
                Err(EmbedError::Backend(e))
            }
        }
    }
}
