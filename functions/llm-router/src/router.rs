//! The routing pipeline: validate → decide the task → pick a route → call the
//! function that serves it → answer with provider, model, usage and cost.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use routing_core::api::{
    ClassifyRequest, ClassifyResponse, EmbedFunctionRequest, EmbedFunctionResponse, ProxyRequest,
    ProxyResponse, RouteExplanation, RouteRequest, RouteResponse, ValidRequest,
};
use routing_core::env::Env;
use routing_core::gateway::{FunctionClient, InvokeError};
use routing_core::policy::{
    BudgetView, LiveStats, ModelEntry, Policy, SelectionInput, Target, estimate_tokens,
};
use routing_core::{Difficulty, Task, classifier};
use tokio::time::Instant;

use crate::error::RouterError;

/// `CLASSIFY_TIMEOUT_MS`: the most time spent asking classify for the task.
pub const ENV_CLASSIFY_TIMEOUT_MS: &str = "CLASSIFY_TIMEOUT_MS";
const DEFAULT_CLASSIFY_TIMEOUT_MS: u64 = 100;
/// Time kept back from provider-proxy's deadline so that it, not the router,
/// reports a provider timeout.
const PROXY_MARGIN: Duration = Duration::from_millis(10);

/// Everything a routed request needs, built once per process.
pub struct Router {
    policy: Policy,
    live: LiveStats,
    functions: FunctionClient,
    classify_timeout: Duration,
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// What a routed call knows about itself.
pub struct Call<'a> {
    /// The call id.
    pub id: &'a str,
    /// When the request arrived.
    pub received_at: Instant,
}

impl Router {
    /// Builds the router from environment variables and registers its metrics.
    pub fn new(env: &Env, registry: &Registry) -> Result<Self, String> {
        let http = routing_core::http::client().map_err(|e| e.to_string())?;
        let classify_timeout_ms = env
            .parse_or(ENV_CLASSIFY_TIMEOUT_MS, DEFAULT_CLASSIFY_TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        let requests = IntCounterVec::new(
            Opts::new(
                "llm_router_requests_total",
                "Routed requests by task, provider and outcome.",
            ),
            &["task", "provider", "outcome"],
        )
        .map_err(|e| e.to_string())?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "llm_router_request_duration_seconds",
                "End-to-end time of routed requests.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            ]),
            &["task"],
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(requests.clone()))
            .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(duration.clone()))
            .map_err(|e| e.to_string())?;
        let policy = Policy::from_env(env).map_err(|e| e.to_string())?;
        Ok(Self {
            live: LiveStats::new(policy.live_config()),
            policy,
            functions: FunctionClient::from_env(env, http),
            classify_timeout: Duration::from_millis(classify_timeout_ms),
            requests,
            duration,
        })
    }

    /// Serves one routing request body.
    pub async fn route(&self, body: &[u8], call: &Call<'_>) -> Result<RouteResponse, RouterError> {
        let request = RouteRequest::parse(body)?;
        let budget = Duration::from_millis(request.max_latency_ms);
        let deadline = call.received_at + budget;
        let (task, difficulty, classified_by) = self.decide_task(&request, call, deadline).await;
        let mut input = SelectionInput::new(task, request.max_latency_ms, request.private);
        input.input_tokens = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .chain(request.inputs.iter().map(String::as_str))
            .map(estimate_tokens)
            .fold(0u32, u32::saturating_add);
        input.max_output_tokens = request.max_tokens;
        input.tenant = request.tenant.clone();
        let decision = self
            .policy
            .select(&input, &self.live, &BudgetView::unlimited())
            .map_err(|e| {
                RouterError::Invalid(routing_core::api::InvalidRequest {
                    param: None,
                    message: e.message,
                })
            })?;
        let route = &decision.primary.model;
        let result = self
            .serve(
                &request,
                task,
                route,
                decision.explanation(),
                call,
                deadline,
            )
            .await
            .map(|mut response| {
                response.difficulty = difficulty;
                if let Some(note) = &classified_by {
                    response.route.reason.push_str("; ");
                    response.route.reason.push_str(note);
                }
                response.latency_ms = millis(call.received_at.elapsed());
                response
            });
        let (provider, outcome) = match &result {
            Ok(r) => (r.provider.as_str(), "ok"),
            Err(e) => (route.provider.as_str(), e.metric_label()),
        };
        self.requests
            .with_label_values(&[task.as_str(), provider, outcome])
            .inc();
        self.duration
            .with_label_values(&[task.as_str()])
            .observe(call.received_at.elapsed().as_secs_f64());
        result
    }

    /// The declared task, or classify's guess (in-process when the classify
    /// function cannot answer in time).
    async fn decide_task(
        &self,
        request: &ValidRequest,
        call: &Call<'_>,
        deadline: Instant,
    ) -> (Task, Option<Difficulty>, Option<String>) {
        if let Some(task) = request.task {
            return (task, None, None);
        }
        let text = request.classification_text();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = self.classify_timeout.min(remaining / 4);
        let asked = self
            .functions
            .invoke::<_, ClassifyResponse>(
                "classify",
                "/",
                &ClassifyRequest {
                    text: text.to_owned(),
                },
                call.id,
                timeout,
            )
            .await;
        match asked {
            Ok(c) => (
                c.task,
                Some(c.difficulty),
                Some(format!(
                    "task {} decided by classify (confidence {:.2})",
                    c.task, c.confidence
                )),
            ),
            Err(e) => {
                tracing::warn!(call_id = call.id, error = %e, "classify unavailable; classifying in-process");
                let c = classifier::classify(text);
                (
                    c.task,
                    Some(c.difficulty),
                    Some(format!(
                        "task {} decided in-process because classify was unavailable",
                        c.task
                    )),
                )
            }
        }
    }

    async fn serve(
        &self,
        request: &ValidRequest,
        task: Task,
        route: &ModelEntry,
        explanation: RouteExplanation,
        call: &Call<'_>,
        deadline: Instant,
    ) -> Result<RouteResponse, RouterError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget_ms = request.max_latency_ms;
        if remaining.is_zero() {
            return Err(RouterError::BudgetExhausted {
                budget_ms,
                during: "before a provider could be called".to_owned(),
            });
        }
        let timed_out = |function: &str| RouterError::BudgetExhausted {
            budget_ms,
            during: format!("waiting for {function}"),
        };
        match route.target {
            Target::Embed => {
                let input = if request.inputs.is_empty() {
                    request.messages.iter().map(|m| m.content.clone()).collect()
                } else {
                    request.inputs.clone()
                };
                let answer: EmbedFunctionResponse = self
                    .functions
                    .invoke(
                        "embed",
                        "/",
                        &EmbedFunctionRequest { input: Some(input) },
                        call.id,
                        remaining,
                    )
                    .await
                    .map_err(|e| match e {
                        InvokeError::Timeout { .. } => timed_out("embed"),
                        other => RouterError::Downstream(other),
                    })?;
                Ok(RouteResponse {
                    id: call.id.to_owned(),
                    task,
                    difficulty: None,
                    provider: answer.provider,
                    model: answer.model,
                    output: None,
                    embeddings: Some(answer.embeddings),
                    finish_reason: None,
                    usage: answer.usage,
                    cost_usd: Some(0.0),
                    latency_ms: 0,
                    route: explanation,
                })
            }
            Target::ProviderProxy => {
                let proxy_request = ProxyRequest {
                    provider: route.provider.clone(),
                    model: route.model.clone(),
                    task,
                    private: request.private,
                    messages: request.messages.clone(),
                    max_tokens: request.max_tokens,
                    temperature: request.temperature,
                    stop: request.stop.clone(),
                    timeout_ms: Some(millis(remaining.saturating_sub(PROXY_MARGIN)).max(1)),
                    stream: false,
                };
                let answer: ProxyResponse = self
                    .functions
                    .invoke("provider-proxy", "/", &proxy_request, call.id, remaining)
                    .await
                    .map_err(|e| match e {
                        InvokeError::Timeout { .. } => timed_out("provider-proxy"),
                        other => RouterError::Downstream(other),
                    })?;
                Ok(RouteResponse {
                    id: call.id.to_owned(),
                    task,
                    difficulty: None,
                    provider: answer.provider,
                    model: answer.model,
                    output: Some(answer.text),
                    embeddings: None,
                    finish_reason: Some(answer.finish_reason),
                    usage: answer.usage,
                    cost_usd: answer.cost_usd,
                    latency_ms: 0,
                    route: explanation,
                })
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
