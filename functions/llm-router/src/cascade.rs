//! The cascade at work: the cheap model's answer, on a rule that escalates
//! and with `[cascade]` on for it, is judged before it is returned (token
//! log-probabilities, agreement of extra cheap samples, an in-cluster
//! judge model's verdict), and escalated
//! when the confidence falls below the calibrated threshold. Every cheap
//! call is settled (live latency, tenant spend) and billed in the answer's
//! cost; `route.cascade` shows the judgement.
//!
//! Privacy holds by construction: the extra samples go to the primary
//! model, the escalation to the decision's escalation target, and both
//! passed the request's hard constraints (a private request only ever has
//! in-cluster ones); the judge is in-cluster (the policy is refused
//! otherwise, and it is checked again here); provider-proxy refuses
//! anything else.

use std::sync::Arc;

use faas_runtime::register_metric;
use futures_util::future::join_all;
use gateway_client::InvokeError;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};
use routing_core::api::{
    Attempt, CascadeExplanation, CascadeSignals, ProxyStreamEvent, RouteExplanation,
};
use routing_core::chat::{FinishReason, Locality, Role};
use routing_core::policy::{
    CascadeCalibrator, CascadeConfig, CascadeScope, CascadeSignal, Combine, ModelEntry, Policy,
    ScopeKey, combine, judge_messages, parse_verdict, sample_agreement,
};
use tokio::time::Instant;

use super::{Answer, Call, Plan, RoutedStream, Router, attempt, millis};
use crate::error::RouterError;
use crate::resilience::Slice;

/// How one call samples: seed, temperature, log-probabilities, and the
/// conversation when it is not the request's (the judge's).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sample {
    /// The seed; `None`: the provider's own.
    pub seed: Option<u64>,
    /// Overrides the request's temperature.
    pub temperature: Option<f32>,
    /// Ask for the answer's token log-probabilities.
    pub logprobs: bool,
    /// Replaces the request's conversation (and its stop sequences).
    pub messages: Option<Vec<routing_core::chat::Message>>,
    /// Replaces the request's `max_tokens`.
    pub max_tokens: Option<u32>,
}

/// The cascade's state in the router: its confidence windows and its
/// decisions counter.
pub(super) struct Cascade {
    calibrator: CascadeCalibrator,
    decisions: IntCounterVec,
    threshold: Gauge,
    window_size: IntGauge,
}

/// Outcomes of `llm_router_cascade_decisions_total`.
const OUTCOMES: [&str; 3] = ["accepted", "escalated", "unjudged"];

impl Cascade {
    pub(super) fn register(registry: &Registry, policy: &Policy) -> Result<Self, String> {
        let decisions = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_router_cascade_decisions_total",
                    "Cheap answers the cascade judged, by outcome: accepted, escalated (confidence \
                     below the threshold) or unjudged (no signal could be read).",
                ),
                &["outcome"],
            ),
        )
        .map_err(|e| e.to_string())?;
        for outcome in OUTCOMES {
            decisions.with_label_values(&[outcome]);
        }
        let threshold = register_metric(
            registry,
            Gauge::new(
                "llm_router_cascade_threshold",
                "Confidence below which the cascade escalates a cheap answer (global window; \
                 +Inf: every answer is).",
            ),
        )
        .map_err(|e| e.to_string())?;
        let window_size = register_metric(
            registry,
            IntGauge::new(
                "llm_router_cascade_window_size",
                "Confidences in the cascade's global window at its last merge.",
            ),
        )
        .map_err(|e| e.to_string())?;
        let cascade = Self {
            calibrator: CascadeCalibrator::default(),
            decisions,
            threshold,
            window_size,
        };
        cascade.show(policy.cascade());
        Ok(cascade)
    }

    /// The global window's threshold, as gauges.
    fn show(&self, config: &CascadeConfig) {
        let global = self.calibrator.threshold(
            config,
            &CascadeScope {
                key: ScopeKey::Global,
                target: config.target_escalation_share,
            },
        );
        self.threshold.set(global.value);
        self.window_size
            .set(i64::try_from(global.n).unwrap_or(i64::MAX));
    }
}

/// A seed per call and sample: samples of one call differ, and a retried
/// call samples the same way.
fn seed(call_id: &str, sample: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.as_bytes().iter().chain(&sample.to_le_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Seeds travel as JSON numbers: keep them exact in a double.
    h >> 11
}

/// Both costs summed; unknown only when both are.
fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Router {
    /// The cascade's settings and window for a plan, when it judges the
    /// plan's cheap answer: the rule escalates, and `[cascade]` is on for
    /// it.
    pub(crate) fn cascade_scope(&self, plan: &Plan) -> Option<(CascadeConfig, CascadeScope)> {
        plan.decision.escalation.as_ref()?;
        let policy = self.policy.current();
        let config = policy.cascade();
        let scope = config.scope(&plan.decision.rule)?;
        Some((config.clone(), scope))
    }

    /// Calls the chain's `position`-th model; the primary is asked for its
    /// log-probabilities when the cascade reads them, and asked again
    /// without when its provider refuses the request with them (a 400:
    /// not every model returns them).
    pub(super) async fn call_candidate(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        call: &Call<'_>,
        slice: Slice,
    ) -> Result<Answer, RouterError> {
        let primary = plan
            .decision
            .chain()
            .next()
            .is_some_and(|first| first.model.id == model.id);
        let logprobs = primary
            && self
                .cascade_scope(plan)
                .is_some_and(|(config, _)| config.reads(CascadeSignal::Logprobs));
        if !logprobs {
            return self
                .call_model_within(plan, model, call, slice, Sample::default())
                .await;
        }
        let sample = Sample {
            logprobs: true,
            ..Sample::default()
        };
        match self
            .call_model_within(plan, model, call, slice, sample)
            .await
        {
            Err(error)
                if matches!(
                    error.downstream(),
                    Some(InvokeError::Failed { status: 400, .. })
                ) =>
            {
                tracing::debug!(call_id = call.id, model = %model.id, "log-probabilities refused; asking without");
                self.call_model(plan, model, call).await
            }
            answered => answered,
        }
    }

    /// Judges the cheap `answer` of `model` (which passed the escalation
    /// checks). Returns it with the extra samples' cost added, and the
    /// reason to escalate when its confidence is below the threshold.
    pub(super) async fn judge(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        answer: Answer,
        explanation: &mut RouteExplanation,
        call: &Call<'_>,
    ) -> (Answer, Option<String>) {
        let Some((config, scope)) = self.cascade_scope(plan) else {
            return (answer, None);
        };
        let mut cheap_cost = answer.cost_usd;
        let mut cheap_latency_ms = explanation.attempts.last().map_or(0, |a| a.latency_ms);
        let mut cheap_calls = 1u32;
        let mut signals = CascadeSignals::default();
        if config.reads(CascadeSignal::Logprobs) {
            signals.logprobs = answer.logprobs.as_ref().map(|l| l.confidence());
        }
        let threshold = self.cascade.calibrator.threshold(&config, &scope);
        // With `min`, a signal already below the threshold decides: the
        // other signals' calls could not change the verdict.
        let decided =
            config.combine == Combine::Min && signals.logprobs.is_some_and(|c| c < threshold.value);
        if config.reads(CascadeSignal::Agreement) && !decided {
            let started = Instant::now();
            let samples = (1..config.samples).map(|k| {
                let sample = Sample {
                    seed: Some(seed(call.id, k)),
                    temperature: Some(config.sample_temperature),
                    ..Sample::default()
                };
                async move {
                    let started = Instant::now();
                    (
                        started,
                        self.call_model_with(plan, model, call, sample).await,
                    )
                }
            });
            let mut texts = Vec::new();
            for (sample_started, result) in join_all(samples).await {
                cheap_calls += 1;
                match result {
                    Ok(sampled) => {
                        self.settle(plan, model, sample_started, &sampled);
                        explanation
                            .attempts
                            .push(attempt(model, "ok", sample_started));
                        cheap_cost = add(cheap_cost, sampled.cost_usd);
                        texts.extend(sampled.output);
                    }
                    Err(error) => {
                        tracing::info!(call_id = call.id, model = %model.id, error = error.metric_label(), "cascade sample failed");
                        explanation.attempts.push(attempt(
                            model,
                            error.metric_label(),
                            sample_started,
                        ));
                    }
                }
            }
            cheap_latency_ms += millis(started.elapsed());
            let others: Vec<&str> = texts.iter().map(String::as_str).collect();
            signals.agreement = answer
                .output
                .as_deref()
                .and_then(|text| sample_agreement(text, &others));
        }
        let (mut judge_call, mut judge_cost) = (None, None);
        if config.reads(CascadeSignal::Judge) && !decided {
            let (verdict, cost, called) = self.ask_judge(plan, &config, &answer, call).await;
            signals.judge = verdict;
            judge_cost = cost;
            judge_call = called;
        }
        let confidence = combine(config.combine, &signals);
        let escalate = confidence.is_some_and(|c| c < threshold.value);
        let due = confidence.is_some_and(|c| self.cascade.calibrator.record(&config, &scope, c));
        if due {
            if let Err(e) = self.cascade.calibrator.refresh(&scope.key, &config).await {
                tracing::warn!(window = %scope.key, error = %e, "cascade window not merged");
            }
            self.cascade.show(&config);
        }
        let outcome = match (confidence, escalate) {
            (None, _) => "unjudged",
            (Some(_), true) => "escalated",
            (Some(_), false) => "accepted",
        };
        self.cascade.decisions.with_label_values(&[outcome]).inc();
        explanation.cascade = Some(CascadeExplanation {
            confidence,
            signals,
            threshold: Some(threshold.value).filter(|t| t.is_finite()),
            target_escalation_share: scope.target,
            source: threshold.source.to_owned(),
            window: threshold.window.to_string(),
            n: threshold.n as u64,
            escalated: escalate,
            cheap_calls,
            cheap_cost_usd: cheap_cost,
            cheap_latency_ms,
            judge: judge_call,
            judge_cost_usd: judge_cost,
        });
        let reason = confidence.filter(|_| escalate).map(|c| {
            format!(
                "the cascade's confidence {c:.3} is below its threshold {:.3}",
                threshold.value
            )
        });
        (
            Answer {
                cost_usd: add(cheap_cost, judge_cost),
                ..answer
            },
            reason,
        )
    }

    /// The judge model's verdict on `answer` (`None` when it could not be
    /// asked or gave no number), what asking cost, and the call.
    async fn ask_judge(
        &self,
        plan: &Plan,
        config: &CascadeConfig,
        answer: &Answer,
        call: &Call<'_>,
    ) -> (Option<f64>, Option<f64>, Option<Attempt>) {
        let policy = self.policy.current();
        let Some(judge) = config
            .judge_model
            .as_deref()
            .and_then(|id| policy.model(id))
            // Loaded policies guarantee it; a judge never sees a prompt
            // outside the cluster whatever happens.
            .filter(|m| m.locality == Locality::InCluster)
        else {
            return (None, None, None);
        };
        let question = plan
            .request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let sample = Sample {
            temperature: Some(0.0),
            messages: Some(judge_messages(
                question,
                answer.output.as_deref().unwrap_or_default(),
            )),
            max_tokens: Some(8),
            ..Sample::default()
        };
        let started = Instant::now();
        match self.call_model_with(plan, judge, call, sample).await {
            Ok(verdict) => {
                self.settle(plan, judge, started, &verdict);
                (
                    verdict.output.as_deref().and_then(parse_verdict),
                    verdict.cost_usd,
                    Some(attempt(judge, "ok", started)),
                )
            }
            Err(error) => {
                tracing::info!(call_id = call.id, model = %judge.id, error = error.metric_label(), "cascade judge failed");
                (
                    None,
                    None,
                    Some(attempt(judge, error.metric_label(), started)),
                )
            }
        }
    }

    /// A stream whose cheap answer the cascade judges: the whole answer is
    /// routed first (judged, escalated if need be), then replayed as a
    /// stream. Every call behind it is already settled.
    pub(super) async fn buffered_stream(
        &self,
        plan: &Plan,
        call: &Call<'_>,
    ) -> Result<RoutedStream, RouterError> {
        let started = Instant::now();
        let response = self.run_chain(plan, call).await?;
        let served = response
            .route
            .attempts
            .iter()
            .rev()
            .find(|a| a.outcome == "ok")
            .map(|a| a.model.as_str());
        let model = plan
            .decision
            .chain()
            .map(|c| &c.model)
            .chain(plan.decision.escalation.as_ref().map(|e| &e.to.model))
            .find(|m| Some(m.id.as_str()) == served)
            .unwrap_or(&plan.decision.primary.model);
        let mut events = Vec::new();
        if let Some(text) = response.output.filter(|t| !t.is_empty()) {
            events.push(Ok(ProxyStreamEvent::Delta { text }));
        }
        events.push(Ok(ProxyStreamEvent::Done {
            provider: response.provider,
            model: response.model,
            finish_reason: response.finish_reason.unwrap_or(FinishReason::Stop),
            usage: response.usage,
            cost_usd: response.cost_usd,
            latency_ms: millis(started.elapsed()),
        }));
        Ok(RoutedStream {
            model: Arc::clone(model),
            explanation: response.route,
            events: Box::pin(futures_util::stream::iter(events)),
            started,
            settled: true,
        })
    }
}
