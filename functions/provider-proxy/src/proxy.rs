//! Calls the provider named in a normalised request, meters the usage it
//! reports and prices it from the catalogue.

use std::time::Duration;

use prometheus::Registry;
use routing_core::api::{ErrorDetail, InvalidRequest, ProxyRequest, ProxyResponse, parse_json};
use routing_core::env::Env;
use routing_core::env::{DEFAULT_SECRETS_DIR, ENV_SECRETS_DIR};
use routing_core::metrics::LlmMetrics;
use routing_core::pricing::Catalogue;
use routing_core::providers::{CallContext, ChatRequest, Locality, ProviderError, Providers};
use routing_core::secrets::SecretStore;
use serde::Serialize;
use tokio::time::Instant;

/// `PROVIDER_TIMEOUT_MS`: the longest any provider call may take.
pub const ENV_PROVIDER_TIMEOUT_MS: &str = "PROVIDER_TIMEOUT_MS";
const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 55_000;
/// `PRICES_PATH`: a price catalogue replacing the built-in one.
pub const ENV_PRICES_PATH: &str = "PRICES_PATH";

/// A failed proxy call.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// A private request named a provider outside the cluster.
    #[error("private requests may only reach in-cluster providers; {provider} is external")]
    PrivateToExternal {
        /// The provider named.
        provider: String,
    },
    /// The provider call failed.
    #[error("{provider}: {error}")]
    Provider {
        /// Provider name.
        provider: String,
        /// What went wrong.
        error: ProviderError,
    },
    /// The path or method is not served.
    #[error("{method} {path} is not served")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
}

impl ProxyError {
    /// HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::Invalid(_) => 400,
            ProxyError::PrivateToExternal { .. } => 403,
            ProxyError::Provider { error, .. } => error.status(),
            ProxyError::NotFound { .. } => 404,
        }
    }

    /// JSON error body.
    pub fn detail(&self) -> ErrorDetail {
        let (kind, param) = match self {
            ProxyError::Invalid(e) => ("invalid_request_error", e.param.clone()),
            ProxyError::PrivateToExternal { .. } => {
                ("private_request_refused", Some("provider".to_owned()))
            }
            ProxyError::Provider { error, .. } => (error.metric_label(), None),
            ProxyError::NotFound { .. } => ("not_found", None),
        };
        let message = match self {
            ProxyError::Invalid(e) => e.message.clone(),
            other => other.to_string(),
        };
        ErrorDetail {
            message,
            kind: kind.to_owned(),
            param,
            code: None,
        }
    }
}

/// One configured provider, as listed by `GET /providers`.
#[derive(Debug, Serialize)]
pub struct ProviderListing {
    /// Configured name.
    pub name: String,
    /// Where it runs.
    pub locality: Locality,
}

/// The provider-proxy state.
pub struct Proxy {
    providers: Providers,
    catalogue: Catalogue,
    metrics: LlmMetrics,
    max_timeout: Duration,
}

impl Proxy {
    /// Reads providers, secrets and prices; registers metrics.
    pub fn new(env: &Env, registry: &Registry) -> Result<Self, String> {
        let secrets = SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        let http = routing_core::http::client().map_err(|e| e.to_string())?;
        let providers = Providers::from_env(env, &secrets, http).map_err(|e| e.to_string())?;
        let catalogue = match env.get(ENV_PRICES_PATH) {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{ENV_PRICES_PATH}={path}: {e}"))?;
                Catalogue::parse(&text, path).map_err(|e| e.to_string())?
            }
            None => Catalogue::builtin().map_err(|e| e.to_string())?,
        };
        let max_timeout_ms = env
            .parse_or(ENV_PROVIDER_TIMEOUT_MS, DEFAULT_PROVIDER_TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            providers,
            catalogue,
            metrics: LlmMetrics::register(registry).map_err(|e| e.to_string())?,
            max_timeout: Duration::from_millis(max_timeout_ms),
        })
    }

    /// The configured providers.
    pub fn listing(&self) -> Vec<ProviderListing> {
        let mut out: Vec<ProviderListing> = self
            .providers
            .names()
            .filter_map(|name| {
                self.providers.get(name).map(|p| ProviderListing {
                    name: name.to_owned(),
                    locality: p.locality(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Serves one normalised chat request.
    pub async fn chat(&self, body: &[u8], call_id: &str) -> Result<ProxyResponse, ProxyError> {
        let request: ProxyRequest = parse_json(body)?;
        if request.messages.is_empty() {
            return Err(InvalidRequest {
                param: Some("messages".to_owned()),
                message: "messages must not be empty".to_owned(),
            }
            .into());
        }
        let Some(provider) = self.providers.get(&request.provider) else {
            let known: Vec<&str> = self.providers.names().collect();
            return Err(InvalidRequest {
                param: Some("provider".to_owned()),
                message: format!(
                    "unknown provider {:?}; configured: {}",
                    request.provider,
                    known.join(", ")
                ),
            }
            .into());
        };
        if request.private && provider.locality() != Locality::InCluster {
            return Err(ProxyError::PrivateToExternal {
                provider: request.provider,
            });
        }
        let timeout = request
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.max_timeout)
            .min(self.max_timeout);
        let started = Instant::now();
        let cx = CallContext {
            call_id,
            deadline: started + timeout,
        };
        let chat = ChatRequest {
            model: request.model.clone(),
            messages: request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stop: request.stop,
        };
        let provider_name = request.provider;
        match provider.chat(&chat, &cx).await {
            Ok(answer) => {
                let elapsed = started.elapsed();
                let cost = self
                    .catalogue
                    .cost(&provider_name, &request.model, &answer.usage);
                self.metrics.record_success(
                    &provider_name,
                    request.task,
                    elapsed,
                    &answer.usage,
                    cost,
                );
                Ok(ProxyResponse {
                    provider: provider_name,
                    model: request.model,
                    served_model: answer.model,
                    text: answer.text,
                    finish_reason: answer.finish_reason,
                    usage: answer.usage,
                    cost_usd: cost,
                    latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Err(error) => {
                self.metrics.record_failure(
                    &provider_name,
                    request.task,
                    started.elapsed(),
                    error.metric_label(),
                );
                tracing::warn!(call_id, provider = %provider_name, error = error.metric_label(), "provider call failed");
                Err(ProxyError::Provider {
                    provider: provider_name,
                    error,
                })
            }
        }
    }
}
