//! Calls the provider named in a normalised request, meters the usage it
//! reports and prices it from the catalogue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{CallLabels, LlmMetrics};
use bytes::Bytes;
use faas_runtime::access::Field;
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
use routing_core::failure::{Failure, FailureClass};

use routing_core::pricing::Catalogue;
use secrets::SecretStore;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::pools::{PoolListing, ReplicaPools};
use crate::sanitise::sanitise;
use tokio::time::Instant;

/// `PROVIDER_TIMEOUT_MS`: the longest any provider call may take.
pub(crate) const ENV_PROVIDER_TIMEOUT_MS: &str = "PROVIDER_TIMEOUT_MS";
/// `ALLOW_UNPRICED_MODELS`: `true` serves models the price catalogue lacks
/// (their calls are counted in `llm_unpriced_calls_total`, billed to nobody).
pub(crate) const ENV_ALLOW_UNPRICED_MODELS: &str = "ALLOW_UNPRICED_MODELS";
/// `MAX_OUTPUT_TOKENS`: the cap on `max_tokens` for a model whose catalogue
/// entry gives no limit of its own (and the value sent when a request has
/// none), so no call generates without bound.
pub(crate) const ENV_MAX_OUTPUT_TOKENS: &str = "MAX_OUTPUT_TOKENS";
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 32_768;
const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 55_000;

/// A failed proxy call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The model has no price, so its calls could be billed to nobody.
    #[error(
        "{provider}/{model} has no price in the catalogue; provider-proxy serves only priced \
         models (add it to the catalogue, or set ALLOW_UNPRICED_MODELS=true)"
    )]
    Unpriced {
        /// The provider named.
        provider: String,
        /// The model named.
        model: String,
    },
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
            ProxyError::PrivateToExternal { .. } | ProxyError::Unpriced { .. } => 403,
            ProxyError::Provider { error, .. } => error.status(),
            ProxyError::NotFound { .. } => 404,
        }
    }

    /// The wait the provider asked for, sent on as `Retry-After`.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ProxyError::Provider { error, .. } => error.retry_after(),
            _ => None,
        }
    }

    /// JSON error body, with the failure class the router acts on. A
    /// provider's own text is sanitised (it may name our project,
    /// organisation or account); the log keeps it whole.
    pub(crate) fn detail(&self) -> ErrorDetail {
        let bad_request = Some(Failure::new(FailureClass::BadRequest));
        let (kind, param, message, failure) = match self {
            ProxyError::Invalid(e) => {
                return ErrorDetail {
                    failure: bad_request,
                    ..ErrorDetail::from(e)
                };
            }
            ProxyError::PrivateToExternal { .. } => (
                "private_request_refused",
                Some("provider".to_owned()),
                self.to_string(),
                bad_request,
            ),
            ProxyError::Provider { provider, error } => (
                error.metric_label(),
                None,
                format!("{provider}: {}", sanitise(&error.to_string())),
                Some(error.failure()),
            ),
            ProxyError::Unpriced { .. } => (
                "model_not_allowed",
                Some("model".to_owned()),
                self.to_string(),
                bad_request,
            ),
            ProxyError::NotFound { .. } => ("not_found", None, self.to_string(), bad_request),
        };
        ErrorDetail {
            param,
            failure,
            ..ErrorDetail::new(kind, message)
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
    allow_unpriced: bool,
    max_output_tokens: u32,
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
        let metrics = LlmMetrics::register(registry, &catalogue, providers.names())
            .map_err(|e| e.to_string())?;
        let allow_unpriced = env
            .parse_or(ENV_ALLOW_UNPRICED_MODELS, false)
            .map_err(|e| e.to_string())?;
        let max_output_tokens = env
            .parse_or(ENV_MAX_OUTPUT_TOKENS, DEFAULT_MAX_OUTPUT_TOKENS)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            providers,
            pools,
            catalogue,
            metrics,
            max_timeout: Duration::from_millis(max_timeout_ms),
            allow_unpriced,
            max_output_tokens,
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
        if let Err(message) = providers::check_model_id(provider.kind(), &request.model) {
            return Err(InvalidRequest {
                param: Some("model".to_owned()),
                message,
            }
            .into());
        }
        if request.private && provider.locality() != Locality::InCluster {
            return Err(ProxyError::PrivateToExternal {
                provider: request.provider,
            });
        }
        let price = self.catalogue.price(&request.provider, &request.model);
        if price.is_none() && !self.allow_unpriced {
            return Err(ProxyError::Unpriced {
                provider: request.provider,
                model: request.model,
            });
        }
        // No caller gets more than the model's own limit, else the fleet's.
        // (A request without max_tokens keeps the provider's default: sent,
        // the cap would count against the context window.)
        let cap = price
            .and_then(|p| p.max_output_tokens)
            .unwrap_or(self.max_output_tokens);
        let max_tokens = request.max_tokens.map(|asked| asked.min(cap));
        let timeout = request
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.max_timeout)
            .min(self.max_timeout);
        Ok(Prepared {
            chat: ChatRequest {
                model: request.model.clone(),
                messages: request.messages,
                max_tokens,
                temperature: request.temperature,
                stop: request.stop,
                options: request.options,
                logprobs: request.logprobs,
            },
            provider: request.provider,
            task: request.task,
            stream: request.stream,
            start_timeout: request.start_timeout_ms.map(Duration::from_millis),
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
        let start_by = prepared
            .start_timeout
            .map_or(deadline, |t| (started + t).min(deadline));
        let opened = tokio::time::timeout_at(start_by, provider.chat_stream(&prepared.chat, &cx))
            .await
            .unwrap_or(Err(ProviderError::Timeout));
        let mut stream = match opened {
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
            let mut first_token = true;
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(ChatChunk::Delta { text }) => {
                        if first_token && !text.is_empty() {
                            first_token = false;
                            proxy
                                .metrics
                                .record_first_token(prepared.labels(), started.elapsed());
                        }
                        ProxyStreamEvent::Delta { text }
                    }
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
                    tracing::debug!(call_id = %call_id, provider = %prepared.provider, "caller left mid-stream");
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
            // Every replica is down or draining: the provider is out, not
            // misconfigured.
            Ok(None) => Err(ProxyError::Provider {
                provider: prepared.provider.clone(),
                error: ProviderError::Overloaded {
                    retry_after: None,
                    message: "its pool has no usable replica".to_owned(),
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
            .record_success(prepared.labels(), elapsed, usage, cost);
        cost
    }

    fn meter_failure(
        &self,
        prepared: &Prepared,
        elapsed: Duration,
        error: ProviderError,
        call_id: &str,
    ) -> ProxyError {
        self.metrics
            .record_failure(prepared.labels(), elapsed, error.metric_label());
        faas_runtime::access::record(Field::Provider, prepared.provider.as_str());
        faas_runtime::access::record(Field::Model, prepared.chat.model.as_str());
        faas_runtime::access::record(Field::Error, error.metric_label());
        // The provider's own words stay in the logs; callers get them sanitised.
        tracing::warn!(call_id, provider = %prepared.provider, model = %prepared.chat.model, error = error.metric_label(), detail = %error, "provider call failed");
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
    /// For a stream: how long the provider may take to start it.
    start_timeout: Option<Duration>,
}

impl Prepared {
    fn labels(&self) -> CallLabels<'_> {
        CallLabels {
            provider: &self.provider,
            model: &self.chat.model,
            task: self.task,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
