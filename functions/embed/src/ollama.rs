//! The Ollama backend: the in-cluster Ollama's `/api/embed`.

use std::time::Duration;

use providers::{CallScope, EmbedRequest, Locality, ProviderError, Providers};
use routing_core::api::EmbedFunctionResponse;
use routing_core::env::{DEFAULT_SECRETS_DIR, ENV_SECRETS_DIR, Env};
use secrets::SecretStore;
use tokio::time::Instant;

use crate::error::EmbedError;

/// The provider name, as `Providers` knows it.
pub(crate) const PROVIDER: &str = "ollama";

/// A client of the in-cluster Ollama.
pub(crate) struct OllamaBackend {
    providers: Providers,
    model: String,
    timeout: Duration,
}

impl OllamaBackend {
    /// Builds the client; refuses an Ollama that is not configured as in-cluster.
    pub(crate) fn new(env: &Env, model: String, timeout: Duration) -> Result<Self, String> {
        let secrets = SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        let http = http_client::client().map_err(|e| e.to_string())?;
        let providers = Providers::from_env(env, &secrets, http).map_err(|e| e.to_string())?;
        match providers.get(PROVIDER) {
            Some(p) if p.locality() == Locality::InCluster => {}
            Some(_) => return Err(format!("embedding backend {PROVIDER} is not in-cluster")),
            None => return Err(format!("embedding backend {PROVIDER} is not configured")),
        }
        Ok(Self {
            providers,
            model,
            timeout,
        })
    }

    /// The model id sent to Ollama.
    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// Embeds non-empty `inputs`.
    pub(crate) async fn embed(
        &self,
        inputs: Vec<String>,
        call_id: &str,
    ) -> Result<EmbedFunctionResponse, EmbedError> {
        let Some(provider) = self.providers.get(PROVIDER) else {
            return Err(EmbedError::Backend(ProviderError::NotConfigured {
                provider: PROVIDER.to_owned(),
                reason: "backend missing".to_owned(),
            }));
        };
        let cx = CallScope {
            call_id,
            deadline: Instant::now() + self.timeout,
        };
        let answer = provider
            .embed(
                &EmbedRequest {
                    model: self.model.clone(),
                    inputs,
                },
                &cx,
            )
            .await
            .map_err(EmbedError::Backend)?;
        Ok(EmbedFunctionResponse {
            provider: PROVIDER.to_owned(),
            model: answer.model,
            embeddings: answer.embeddings,
            usage: answer.usage,
        })
    }
}
