//! Calls the provider named in a normalised request, meters the usage it
//! reports and prices it from the catalogue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::LlmMetrics;
use bytes::Bytes;
use futures_util::StreamExt;
use prometheus::Registry;
use providers::pool::PoolGuard;
use providers::{
    CallScope, ChatChunk, ChatRequest, Locality, Provider, ProviderError, Providers, Usage,
};
use routing_core::Task;
use routing_core::api::{
    ErrorDetail, InvalidRequest, ProxyRequest, ProxyResponse, ProxyStreamEvent, parse_json,
};
use routing_core::env::{DEFAULT_SECRETS_DIR, ENV_SECRETS_DIR, Env};

use routing_core::pricing::Catalogue;
use secrets::SecretStore;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::pools::{PoolListing, ReplicaPools};
use tokio::time::Instant;

/// `PROVIDER_TIMEOUT_MS`: the longest any provider call may take.
pub(crate) const ENV_PROVIDER_TIMEOUT_MS: &str = "PROVIDER_TIMEOUT_MS";
const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 55_000;

/// A failed proxy call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
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
    pub(crate) fn status(&self) -> u16 {
        match self {
            ProxyError::Invalid(_) => 400,
            ProxyError::PrivateToExternal { .. } => 403,
            ProxyError::Provider { error, .. } => error.status(),
            ProxyError::NotFound { .. } => 404,
        }
    }

    /// JSON error body.
    pub(crate) fn detail(&self) -> ErrorDetail {
        let (kind, param) = match self {
            ProxyError::Invalid(e) => return ErrorDetail::from(e),
            ProxyError::PrivateToExternal { .. } => {
                ("private_request_refused", Some("provider".to_owned()))
            }
            ProxyError::Provider { error, .. } => (error.metric_label(), None),
            ProxyError::NotFound { .. } => ("not_found", None),
        };
        ErrorDetail {
            param,
            ..ErrorDetail::new(kind, self.to_string())
        }
    }
}

/// One configured provider, as listed by `GET /providers`.
#[derive(Debug, Serialize)]
pub(crate) struct ProviderListing {
    /// Configured name.
    pub name: String,
    /// Where it runs.
    pub locality: Locality,
}

/// The provider-proxy state.
pub(crate) struct Proxy {
    providers: Providers,
    pools: ReplicaPools,
    catalogue: Catalogue,
    metrics: LlmMetrics,
    max_timeout: Duration,
}

impl Proxy {
    /// Reads providers, secrets and prices; registers metrics.
    pub(crate) fn new(env: &Env, registry: &Registry) -> Result<Self, String> {
        let secrets = SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        let http = http_client::client().map_err(|e| e.to_string())?;
        let pools = ReplicaPools::from_env(env, &secrets, &http)?;
        let providers = Providers::from_env(env, &secrets, http).map_err(|e| e.to_string())?;
        let catalogue = Catalogue::from_env(env).map_err(|e| e.to_string())?;
        let max_timeout_ms = env
            .parse_or(ENV_PROVIDER_TIMEOUT_MS, DEFAULT_PROVIDER_TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            providers,
            pools,
            catalogue,
            metrics: LlmMetrics::register(registry).map_err(|e| e.to_string())?,
            max_timeout: Duration::from_millis(max_timeout_ms),
        })
    }

    /// The configured providers.
    pub(crate) fn listing(&self) -> Vec<ProviderListing> {
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

    /// Parses a request body and checks it against the configuration.
    pub(crate) fn prepare(&self, body: &[u8]) -> Result<Prepared, ProxyError> {
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
        Ok(Prepared {
            chat: ChatRequest {
                model: request.model.clone(),
                messages: request.messages,
                max_tokens: request.max_tokens,
                temperature: request.temperature,
                stop: request.stop,
                seed: request.seed,
                logprobs: request.logprobs,
            },
            provider: request.provider,
            task: request.task,
            stream: request.stream,
            timeout,
        })
    }

    /// Calls the provider and waits for the whole answer.
    pub(crate) async fn chat(
        &self,
        prepared: Prepared,
        call_id: &str,
    ) -> Result<ProxyResponse, ProxyError> {
        let started = Instant::now();
        let cx = CallScope {
            call_id,
            deadline: started + prepared.timeout,
        };
        let (provider, _slot) = self.place(&prepared, &cx, started).await?;
        match provider.chat(&prepared.chat, &cx).await {
            Ok(answer) => {
                let elapsed = started.elapsed();
                let cost = self.meter_success(&prepared, elapsed, &answer.usage);
                Ok(ProxyResponse {
                    provider: prepared.provider,
                    model: prepared.chat.model,
                    served_model: answer.model,
                    text: answer.text,
                    finish_reason: answer.finish_reason,
                    usage: answer.usage,
                    cost_usd: cost,
                    latency_ms: millis(elapsed),
                    logprobs: answer.logprobs,
                })
            }
            Err(error) => Err(self.meter_failure(&prepared, started.elapsed(), error, call_id)),
        }
    }

    /// Calls the provider with streaming and returns the answer as
    /// server-sent [`ProxyStreamEvent`] frames. Fails before the first frame
    /// when the provider refuses the request; a failure later becomes an
    /// `error` event.
    pub(crate) async fn chat_stream(
        self: &Arc<Self>,
        prepared: Prepared,
        call_id: &str,
    ) -> Result<mpsc::Receiver<Bytes>, ProxyError> {
        let started = Instant::now();
        let deadline = started + prepared.timeout;
        let cx = CallScope { call_id, deadline };
        let (provider, slot) = self.place(&prepared, &cx, started).await?;
        let mut stream = match provider.chat_stream(&prepared.chat, &cx).await {
            Ok(stream) => stream,
            Err(error) => {
                return Err(self.meter_failure(&prepared, started.elapsed(), error, call_id));
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let proxy = Arc::clone(self);
        let call_id = call_id.to_owned();
        tokio::spawn(async move {
            // The pool slot is held until the stream ends.
            let _slot = slot;
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(ChatChunk::Delta { text }) => ProxyStreamEvent::Delta { text },
                    Ok(ChatChunk::Done {
                        finish_reason,
                        usage,
                    }) => {
                        let elapsed = started.elapsed();
                        let cost_usd = proxy.meter_success(&prepared, elapsed, &usage);
                        ProxyStreamEvent::Done {
                            provider: prepared.provider.clone(),
                            model: prepared.chat.model.clone(),
                            finish_reason,
                            usage,
                            cost_usd,
                            latency_ms: millis(elapsed),
                        }
                    }
                    Err(error) => {
                        let failure =
                            proxy.meter_failure(&prepared, started.elapsed(), error, &call_id);
                        ProxyStreamEvent::Error {
                            error: failure.detail(),
                        }
                    }
                };
                let last = !matches!(event, ProxyStreamEvent::Delta { .. });
                if tx.send(event.to_sse()).await.is_err() {
                    // The caller hung up: dropping the provider stream cancels the call.
                    tracing::info!(call_id = %call_id, provider = %prepared.provider, "caller left mid-stream");
                    return;
                }
                if last {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// The client to call: the least busy replica when the provider is
    /// pooled (waiting for a slot within the deadline), else the provider.
    async fn place(
        &self,
        prepared: &Prepared,
        cx: &CallScope<'_>,
        started: Instant,
    ) -> Result<(&Provider, Option<PoolGuard>), ProxyError> {
        if !self.pools.contains(&prepared.provider) {
            return Ok((self.provider(&prepared.provider)?, None));
        }
        match tokio::time::timeout_at(cx.deadline, self.pools.pick(&prepared.provider)).await {
            Ok(Some((provider, guard))) => Ok((provider, Some(guard))),
            Ok(None) => Err(ProxyError::Provider {
                provider: prepared.provider.clone(),
                error: ProviderError::NotConfigured {
                    provider: prepared.provider.clone(),
                    reason: "its pool has no usable replica".to_owned(),
                },
            }),
            Err(_) => Err(self.meter_failure(
                prepared,
                started.elapsed(),
                ProviderError::Timeout,
                cx.call_id,
            )),
        }
    }

    /// Each pooled provider's replicas and their load.
    pub(crate) fn pool_listing(&self) -> BTreeMap<String, PoolListing> {
        self.pools.listing()
    }

    fn provider(&self, name: &str) -> Result<&Provider, ProxyError> {
        self.providers.get(name).ok_or_else(|| {
            ProxyError::Invalid(InvalidRequest {
                param: Some("provider".to_owned()),
                message: format!("unknown provider {name:?}"),
            })
        })
    }

    fn meter_success(&self, prepared: &Prepared, elapsed: Duration, usage: &Usage) -> Option<f64> {
        let cost = self
            .catalogue
            .cost(&prepared.provider, &prepared.chat.model, usage);
        self.metrics
            .record_success(&prepared.provider, prepared.task, elapsed, usage, cost);
        cost
    }

    fn meter_failure(
        &self,
        prepared: &Prepared,
        elapsed: Duration,
        error: ProviderError,
        call_id: &str,
    ) -> ProxyError {
        self.metrics.record_failure(
            &prepared.provider,
            prepared.task,
            elapsed,
            error.metric_label(),
        );
        tracing::warn!(call_id, provider = %prepared.provider, error = error.metric_label(), "provider call failed");
        ProxyError::Provider {
            provider: prepared.provider.clone(),
            error,
        }
    }
}

/// A checked request, ready to send.
pub(crate) struct Prepared {
    chat: ChatRequest,
    provider: String,
    task: Task,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    timeout: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
