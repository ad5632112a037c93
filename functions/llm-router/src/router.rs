//! The routing pipeline: validate → decide task and difficulty → select a
//! model with the policy → call it through the fleet, falling back along the
//! decision's chain and escalating a cheap answer that fails its check →
//! answer with provider, model, usage, cost and the decision.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faas_runtime::register_metric;
use gateway_client::{EventStream, FunctionClient, InvokeError};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use routing_core::api::ValidFeedback;
use routing_core::api::{
    Attempt, CalibrationExplanation, ClassifyRequest, ClassifyResponse, EmbedFunctionRequest,
    EmbedFunctionResponse, Escalated, ProxyRequest, ProxyResponse, RouteExplanation, RouteResponse,
    ValidRequest,
};
use routing_core::calls::{CallRecord, CallRecords};
use routing_core::chat::{FinishReason, Usage};
use routing_core::env::Env;
use routing_core::policy::{
    ArmKey, BudgetStore, BudgetView, CalibrationScope, Calibrator, Decision, Learned, Learner,
    LearningConfig, LearningContext, LiveStats, ModelEntry, Policy, PolicyWatcher, ScopeKey,
    SelectionInput, ServingFunction, needs_escalation,
};
use routing_core::{Difficulty, Task, classifier};
use tokio::time::Instant;

use crate::error::RouterError;
use crate::resilience::{self, AttemptPolicy, Slice};

#[path = "cascade.rs"]
mod cascade;
pub(crate) use cascade::Sample;

/// `CLASSIFY_TIMEOUT_MS`: the most time spent asking classify.
pub(crate) const ENV_CLASSIFY_TIMEOUT_MS: &str = "CLASSIFY_TIMEOUT_MS";
const DEFAULT_CLASSIFY_TIMEOUT_MS: u64 = 100;
/// `LEARNING_SEED`: seeds exploration (with each call id), for
/// reproducible runs.
pub(crate) const ENV_LEARNING_SEED: &str = "LEARNING_SEED";
/// `LEARNING_EXPLORE_SHARE`: overrides the policy's
/// `[learning].explore_share` (0 stops exploring without a policy change).
pub(crate) const ENV_LEARNING_EXPLORE_SHARE: &str = "LEARNING_EXPLORE_SHARE";
/// Time kept back from provider-proxy's deadline so that it, not the router,
/// reports a provider timeout.
const PROXY_MARGIN: Duration = Duration::from_millis(10);
/// The most kept back from an attempt cut short for a fallback, which keeps
/// a tenth of its time (at least [`PROXY_MARGIN`]): there the proxy's own
/// report decides whether the model is to blame.
const PROXY_MARGIN_MAX: Duration = Duration::from_millis(250);

/// The `reason` labels of `llm_router_escalations_total` (the kinds of
/// [`routing_core::policy::EscalationReason`]).
const ESCALATION_REASONS: [&str; 5] = [
    "empty",
    "truncated",
    "refusal",
    "content_filter",
    "low_confidence",
];

/// The time provider-proxy is given for an attempt of `slice` (the whole
/// attempt when `timeout` is the slice's).
fn proxy_timeout(timeout: Duration, slice: &Slice) -> Duration {
    let margin = if slice.timeout < slice.remaining {
        (slice.timeout / 10).clamp(PROXY_MARGIN, PROXY_MARGIN_MAX)
    } else {
        PROXY_MARGIN
    };
    timeout.saturating_sub(margin)
}

/// Everything a routed request needs, built once per process.
pub(crate) struct Router {
    policy: PolicyWatcher,
    budget_cap: crate::exec_budget::BudgetCap,
    live: LiveStats,
    budgets: Arc<dyn BudgetStore>,
    functions: FunctionClient,
    classify_timeout: Duration,
    requests: IntCounterVec,
    duration: HistogramVec,
    fallbacks: IntCounterVec,
    escalations: IntCounterVec,
    calibrator: Calibrator,
    calibration: CalibrationGauges,
    learner: Learner,
    explore_share: Option<f64>,
    calls: Arc<dyn CallRecords>,
    feedback: IntCounterVec,
    explorations: IntCounter,
    attempts: AttemptPolicy,
    failures: IntCounterVec,
    cascade: cascade::Cascade,
}

/// What one feedback taught.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Learnt {
    /// The call.
    pub call_id: String,
    /// The model that answered it (the arm rewarded).
    pub model: String,
    /// The context it was rewarded in.
    pub context: LearningContext,
    /// The reward in `[0, 1]`.
    pub reward: f64,
    /// Whether the reward was learned (not when learning is disabled or
    /// the tenant frozen).
    pub learned: bool,
    /// Observations of the arm in this context after the feedback.
    pub observations: u64,
    /// The arm's predicted quality in this context after the feedback.
    pub predicted_quality: f32,
    /// `prior` or `learned`.
    pub source: routing_core::api::QualitySource,
    /// The model the caller would have preferred (recorded, not learned:
    /// only the served model's outcome is observed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_model: Option<String>,
}

/// The global window's operating point, as gauges, and the tiers decided.
struct CalibrationGauges {
    thresholds: GaugeVec,
    window_size: IntGauge,
    cold_start: IntGauge,
    tiers: IntCounterVec,
}

impl CalibrationGauges {
    fn register(registry: &Registry) -> Result<Self, String> {
        let thresholds = GaugeVec::new(
            Opts::new(
                "llm_router_tier_threshold",
                "needs_strong score from which a prompt is rated this tier (global window; \
                 +Inf: the tier's target share is 0).",
            ),
            &["tier"],
        )
        .map_err(|e| e.to_string())?;
        let window_size = IntGauge::new(
            "llm_router_calibration_window_size",
            "Scores in the global calibration window at its last merge.",
        )
        .map_err(|e| e.to_string())?;
        let cold_start = IntGauge::new(
            "llm_router_calibration_cold_start",
            "1 while the global window holds too few scores and the static cut-offs apply.",
        )
        .map_err(|e| e.to_string())?;
        let tiers = IntCounterVec::new(
            Opts::new(
                "llm_router_tier_total",
                "Scored prompts by the difficulty tier they were rated.",
            ),
            &["tier"],
        )
        .map_err(|e| e.to_string())?;
        for c in [
            Box::new(thresholds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(window_size.clone()),
            Box::new(cold_start.clone()),
            Box::new(tiers.clone()),
        ] {
            registry.register(c).map_err(|e| e.to_string())?;
        }
        for tier in [Difficulty::Simple, Difficulty::Medium, Difficulty::Hard] {
            tiers.with_label_values(&[tier.as_str()]);
        }
        Ok(Self {
            thresholds,
            window_size,
            cold_start,
            tiers,
        })
    }

    fn show(&self, status: &CalibrationExplanation) {
        let value = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
        self.thresholds
            .with_label_values(&["medium"])
            .set(value(status.thresholds.medium));
        self.thresholds
            .with_label_values(&["hard"])
            .set(value(status.thresholds.hard));
        self.window_size
            .set(i64::try_from(status.n).unwrap_or(i64::MAX));
        self.cold_start.set(i64::from(status.source != "window"));
    }
}

/// What a routed call knows about itself.
pub(crate) struct Call<'a> {
    /// The call id.
    pub id: &'a str,
    /// When the request arrived.
    pub received_at: Instant,
}

/// A request with its decision, ready to run.
pub(crate) struct Plan {
    /// The validated request.
    pub request: ValidRequest,
    /// The task served.
    pub task: Task,
    /// The difficulty routed for.
    pub difficulty: Option<Difficulty>,
    /// How the task and difficulty were decided, when not declared.
    pub classification: Option<String>,
    /// The classifier's needs-strong probability, when it judged the prompt.
    pub needs_strong: Option<f32>,
    /// The cut-offs the difficulty was read from `needs_strong` with.
    pub calibration: Option<CalibrationExplanation>,
    /// The policy's decision.
    pub decision: Decision,
    /// The selection input the decision was taken for.
    pub input: SelectionInput,
    /// What the bandit knew of this request's context.
    pub learned: Learned,
    /// When the caller's latency budget runs out.
    pub deadline: Instant,
}

impl Plan {
    /// The decision as the caller sees it.
    pub(crate) fn explanation(&self) -> RouteExplanation {
        let mut explanation = self.decision.explanation();
        explanation.needs_strong = self.needs_strong;
        explanation.calibration = self.calibration.clone();
        if let Some(note) = &self.classification {
            explanation.reason.push_str("; ");
            explanation.reason.push_str(note);
        }
        explanation
    }
}

/// The task and difficulty a request is routed for, and how they were decided.
struct Classified {
    task: Task,
    difficulty: Option<Difficulty>,
    confidence: Option<f32>,
    needs_strong: Option<f32>,
    /// Who judged the prompt, when it was judged.
    by: Option<&'static str>,
}

impl Classified {
    /// Declared by the caller: nothing was judged.
    fn declared(task: Task, difficulty: Option<Difficulty>) -> Self {
        Self {
            task,
            difficulty,
            confidence: None,
            needs_strong: None,
            by: None,
        }
    }
}

/// A stream that has started: who serves it and its events.
pub(crate) struct RoutedStream {
    /// The catalogue model serving it.
    pub model: Arc<ModelEntry>,
    /// The decision, with the attempts made to start the stream.
    pub explanation: RouteExplanation,
    /// provider-proxy's events.
    pub events: EventStream,
    /// When the stream started.
    pub started: Instant,
    /// The answer was buffered (a cascade judged it) and every call behind
    /// it already settled: the stream's end records nothing more.
    pub settled: bool,
}

/// One model's answer.
struct Answer {
    provider: String,
    model: String,
    output: Option<String>,
    embeddings: Option<Vec<Vec<f32>>>,
    finish_reason: Option<FinishReason>,
    usage: Usage,
    cost_usd: Option<f64>,
    logprobs: Option<routing_core::chat::Logprobs>,
}

impl Router {
    /// Builds the router from environment variables and registers its metrics.
    pub(crate) fn new(env: &Env, registry: &Registry) -> Result<Self, String> {
        let http = http_client::client().map_err(|e| e.to_string())?;
        let classify_timeout_ms = env
            .parse_or(ENV_CLASSIFY_TIMEOUT_MS, DEFAULT_CLASSIFY_TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register_metric(registry, IntCounterVec::new(Opts::new(name, help), labels))
                .map_err(|e| e.to_string())
        };
        let requests = counter(
            "llm_router_requests_total",
            "Routed requests by task, provider and outcome.",
            &["task", "provider", "outcome"],
        )?;
        let fallbacks = counter(
            "llm_router_fallbacks_total",
            "Calls that failed over to the next model of the chain, by the failed provider.",
            &["provider"],
        )?;
        let escalations = counter(
            "llm_router_escalations_total",
            "Cheap answers that failed their check and were escalated, by reason.",
            &["reason"],
        )?;
        let duration = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "llm_router_request_duration_seconds",
                    "End-to-end time of routed requests.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
                ]),
                &["task"],
            ),
        )
        .map_err(|e| e.to_string())?;
        let feedback = counter(
            "llm_router_feedback_total",
            "Feedback on routed calls: explicit (POST /feedback) or implicit (a fallback or an \
             escalation), by outcome (positive, negative, or ignored when not learned).",
            &["kind", "outcome"],
        )?;
        for kind in ["explicit", "implicit"] {
            for outcome in ["positive", "negative", "ignored"] {
                feedback.with_label_values(&[kind, outcome]);
            }
        }
        let failures = counter(
            "llm_router_attempt_failures_total",
            "Failed attempts by failure class; unreachable_proxy is provider-proxy's own health \
             and never counts against a model.",
            &["class"],
        )?;
        for class in routing_core::failure::FailureClass::ALL {
            failures.with_label_values(&[class.as_str()]);
        }
        let attempts = AttemptPolicy::from_env(env)?;
        let explorations = register_metric(
            registry,
            IntCounter::new(
                "llm_router_explorations_total",
                "Calls routed to a candidate other than the top-ranked one, to learn about it.",
            ),
        )
        .map_err(|e| e.to_string())?;
        let stores = crate::state::open(env, registry)?;
        let seed = env
            .parse_or(ENV_LEARNING_SEED, 0x5eed_u64)
            .map_err(|e| e.to_string())?;
        let explore_share = match env.get(ENV_LEARNING_EXPLORE_SHARE) {
            None => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(share) if share.is_finite() && (0.0..=0.5).contains(&share) => Some(share),
                _ => {
                    return Err(format!(
                        "{ENV_LEARNING_EXPLORE_SHARE} must be a number between 0 and 0.5, not {v:?}"
                    ));
                }
            },
        };
        let policy = PolicyWatcher::from_env(env).map_err(|e| e.to_string())?;
        let calibrator = Calibrator::new(stores.windows.clone());
        let calibration = CalibrationGauges::register(registry)?;
        let current = policy.current();
        // Every series exists from start-up, so rates and alerts see the
        // first fallback or escalation.
        for model in current.models() {
            fallbacks.with_label_values(&[&model.provider]);
        }
        for reason in ESCALATION_REASONS {
            escalations.with_label_values(&[reason]);
        }
        calibration.show(&calibrator.status(
            current.calibration(),
            &CalibrationScope {
                key: ScopeKey::Global,
                target: current.calibration().target_share,
            },
        ));
        Ok(Self {
            budget_cap: crate::exec_budget::BudgetCap::from_env(env)?,
            live: policy.live_stats(),
            policy,
            budgets: stores.budgets.clone(),
            functions: FunctionClient::from_env(env, http).map_err(|e| e.to_string())?,
            classify_timeout: Duration::from_millis(classify_timeout_ms),
            requests,
            duration,
            fallbacks,
            escalations,
            calibrator,
            calibration,
            learner: Learner::new(stores.arms.clone(), seed),
            explore_share,
            calls: stores.calls,
            feedback,
            explorations,
            attempts,
            failures,
            cascade: cascade::Cascade::register(registry, &current)?,
        })
    }

    /// Live latency and breakers.
    pub(crate) fn live(&self) -> &LiveStats {
        &self.live
    }

    /// How the budget is shared between the attempts of a chain.
    pub(crate) fn attempt_policy(&self) -> &AttemptPolicy {
        &self.attempts
    }

    /// Counts a failed attempt by class.
    pub(crate) fn count_failure(&self, class: routing_core::failure::FailureClass) {
        self.failures.with_label_values(&[class.as_str()]).inc();
    }

    /// Counts a fall-back away from `provider`.
    pub(crate) fn count_fallback(&self, provider: &str) {
        self.fallbacks.with_label_values(&[provider]).inc();
    }

    /// The policy's `[learning]` settings, with the environment's override.
    fn learning(&self, policy: &Policy) -> LearningConfig {
        let mut config = policy.learning().clone();
        if let Some(share) = self.explore_share {
            config.explore_share = share;
        }
        config
    }

    /// Lets the plan explore (a routed call, not a dry run): see
    /// [`routing_core::policy::explore`].
    pub(crate) fn explore(&self, plan: &mut Plan, call: &Call<'_>) {
        let config = self.learning(&self.policy.current());
        if self.learner.explore(
            &config,
            &plan.input,
            &mut plan.decision,
            &plan.learned,
            call.id,
        ) {
            self.explorations.inc();
        }
    }

    /// Learns `reward` for `model` from a call's tenant, counting it.
    async fn reward(
        &self,
        kind: &str,
        tenant: Option<&str>,
        key: &ArmKey,
        reward: f64,
    ) -> Option<routing_core::policy::ArmStats> {
        let config = self.learning(&self.policy.current());
        let learned = match self.learner.learn(&config, tenant, key, reward).await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(arm = %key, error = %e, "feedback not learned");
                None
            }
        };
        let outcome = match learned {
            None => "ignored",
            Some(_) if reward >= 0.5 => "positive",
            Some(_) => "negative",
        };
        self.feedback.with_label_values(&[kind, outcome]).inc();
        learned
    }

    /// Keeps what feedback on a routed call needs, and learns the implicit
    /// signals: each model that failed before another answered (a
    /// fallback) and a cheap answer that failed its check (an escalation)
    /// are rewarded 0.
    pub(crate) async fn remember(
        &self,
        plan: &Plan,
        call: &Call<'_>,
        route: &RouteExplanation,
        served: &str,
    ) {
        let context = LearningContext::for_input(&plan.input);
        let tenant = plan.request.tenant.as_deref();
        let mut failed: Vec<&str> = route
            .attempts
            .iter()
            .filter(|a| a.outcome != "ok" && resilience::tells_of_the_model(&a.outcome))
            .map(|a| a.model.as_str())
            .collect();
        if let Some(e) = &route.escalated {
            failed.push(&e.from);
        }
        for model in failed {
            let key = ArmKey {
                model: model.to_owned(),
                context,
            };
            self.reward("implicit", tenant, &key, 0.0).await;
        }
        let record = CallRecord {
            call_id: call.id.to_owned(),
            tenant: plan.request.tenant.clone(),
            model: served.to_owned(),
            tier: plan.difficulty,
            candidates: plan.decision.chain().map(|c| c.model.id.clone()).collect(),
            context,
            explored: plan.decision.explored,
            private: plan.request.private,
        };
        self.record(record).await;
    }

    /// Keeps a call's record for feedback.
    pub(crate) async fn record(&self, record: CallRecord) {
        let call_id = record.call_id.clone();
        if let Err(e) = self.calls.put(record).await {
            tracing::warn!(call_id, error = %e, "call not recorded for feedback");
        }
    }

    /// Takes explicit feedback on a recorded call.
    pub(crate) async fn feedback(&self, feedback: ValidFeedback) -> Result<Learnt, RouterError> {
        let policy = self.policy.current();
        if let Some(preferred) = feedback
            .preferred_model
            .as_deref()
            .filter(|m| policy.model(m).is_none())
        {
            return Err(RouterError::Invalid(routing_core::api::InvalidRequest {
                param: Some("preferred_model".to_owned()),
                message: format!("model {preferred:?} is not in the catalogue"),
            }));
        }
        let record = self
            .calls
            .claim(&feedback.call_id, feedback.tenant.as_deref())
            .await
            .map_err(RouterError::Feedback)?;
        let key = ArmKey {
            model: record.model.clone(),
            context: record.context,
        };
        let learned = self
            .reward("explicit", record.tenant.as_deref(), &key, feedback.reward)
            .await;
        let stats = match learned {
            Some(stats) => stats,
            None => self.learner.stats(&key).await.unwrap_or_default(),
        };
        let mut view = Learned::new(policy.learning());
        view.insert(key.model.clone(), stats);
        let prior = policy.model(&key.model).map_or(0.0, |m| {
            m.quality.expected(
                key.context.task,
                key.context.tier,
                policy.selection_config().unknown_difficulty,
                None,
            )
        });
        let prediction = view.predict(&key.model, prior);
        Ok(Learnt {
            call_id: record.call_id,
            model: record.model,
            context: record.context,
            reward: feedback.reward,
            learned: learned.is_some(),
            observations: stats.n,
            predicted_quality: prediction.quality,
            source: prediction.source,
            preferred_model: feedback.preferred_model,
        })
    }

    /// Takes up the global calibration window from the store, so that a
    /// replica sharing it (`STATE_URL`) starts at the shared operating
    /// point instead of a cold start.
    pub(crate) async fn load_shared_state(&self) {
        if let Err(e) = self.calibrator.load(&ScopeKey::Global).await {
            tracing::warn!(error = %e, "calibration window not loaded; it fills as requests come");
            return;
        }
        let policy = self.policy.current();
        let config = policy.calibration();
        self.calibration.show(&self.calibrator.status(
            config,
            &CalibrationScope {
                key: ScopeKey::Global,
                target: config.target_share,
            },
        ));
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> Policy {
        self.policy.current()
    }

    /// Decides task, difficulty and model for a validated request.
    pub(crate) async fn plan(
        &self,
        request: ValidRequest,
        call: &Call<'_>,
    ) -> Result<Plan, RouterError> {
        let request = self.budget_cap.apply(request);
        let deadline = call.received_at + Duration::from_millis(request.max_latency_ms);
        let Classified {
            task,
            difficulty,
            confidence,
            needs_strong,
            by,
        } = self.judge_task(&request, call, deadline).await;
        let mut input = SelectionInput::for_request(&request, task, difficulty, confidence);
        let policy = self.policy.current();
        let calibration = match needs_strong {
            Some(score) => {
                let (difficulty, explanation) = self
                    .calibrate(&policy, &input, score, request.classification_text())
                    .await;
                input.difficulty = Some(difficulty);
                Some(explanation)
            }
            None => None,
        };
        let classification = by.map(|by| {
            let difficulty = input.difficulty.map_or("unknown", Difficulty::as_str);
            let confidence = confidence.unwrap_or(0.0);
            let how = match &calibration {
                Some(c) if c.source == "window" => {
                    format!("; difficulty cut at the {} window's quantiles", c.window)
                }
                Some(c) => format!("; difficulty cut at the static cut-offs ({})", c.source),
                None => String::new(),
            };
            if request.task.is_none() {
                format!(
                    "task {task} and difficulty {difficulty} decided by {by} (confidence \
                     {confidence:.2}){how}"
                )
            } else {
                format!("difficulty {difficulty} judged by {by} (confidence {confidence:.2}){how}")
            }
        });
        let difficulty = input.difficulty;
        let learned = match self
            .learner
            .view(&policy, &LearningContext::for_input(&input))
            .await
        {
            Ok(learned) => learned,
            Err(e) => {
                tracing::warn!(call_id = call.id, error = %e, "learned state unavailable; static priors");
                Learned::new(policy.learning())
            }
        };
        let now = SystemTime::now();
        if let Some(tenant) = input.tenant.as_deref()
            && let Err(e) = self.budgets.refresh(tenant, now).await
        {
            tracing::warn!(call_id = call.id, error = %e, "shared spend unavailable; this replica's");
        }
        let decision = policy
            .select_learned(
                &input,
                &self.live,
                &BudgetView::new(&*self.budgets, now),
                &learned,
            )
            .map_err(RouterError::from)?;
        Ok(Plan {
            request,
            task,
            difficulty,
            classification,
            needs_strong,
            calibration,
            decision,
            input,
            learned,
            deadline,
        })
    }

    /// The difficulty tier for a needs-strong score at the policy's
    /// calibrated operating point; feeds the score's window.
    async fn calibrate(
        &self,
        policy: &Policy,
        input: &SelectionInput,
        score: f32,
        text: &str,
    ) -> (Difficulty, CalibrationExplanation) {
        let config = policy.calibration();
        let scope = policy.calibration_scope(input);
        let calibrated = self.calibrator.calibrate(config, &scope, score, text);
        self.calibration
            .tiers
            .with_label_values(&[calibrated.difficulty.as_str()])
            .inc();
        if let Some(key) = calibrated.refresh {
            if let Err(e) = self.calibrator.refresh(&key, config).await {
                tracing::warn!(window = %key, error = %e, "calibration window not merged");
            }
            if key == ScopeKey::Global {
                self.calibration.show(&self.calibrator.status(
                    config,
                    &CalibrationScope {
                        key,
                        target: config.target_share,
                    },
                ));
            }
        }
        (calibrated.difficulty, calibrated.explanation)
    }

    /// The declared task and difficulty, or classify's judgement (in-process
    /// when the classify function cannot answer within its share of the
    /// budget).
    async fn judge_task(
        &self,
        request: &ValidRequest,
        call: &Call<'_>,
        deadline: Instant,
    ) -> Classified {
        match (request.task, request.difficulty) {
            (Some(Task::Embed), _) => return Classified::declared(Task::Embed, None),
            (Some(task), Some(difficulty)) => return Classified::declared(task, Some(difficulty)),
            _ => {}
        }
        let text = request.classification_text();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = self.classify_timeout.min(remaining / 4);
        let asked = if timeout.is_zero() {
            Err(InvokeError::Timeout {
                function: "classify".to_owned(),
                timeout_ms: 0,
            })
        } else {
            self.functions
                .invoke::<_, ClassifyResponse>(
                    "classify",
                    "/",
                    &ClassifyRequest {
                        text: text.to_owned(),
                    },
                    call.id,
                    timeout,
                )
                .await
        };
        let (verdict, by) = match asked {
            Ok(verdict) => (verdict, "classify"),
            Err(e) => {
                tracing::debug!(call_id = call.id, error = %e, "classify unavailable in time; classifying in-process");
                (
                    classifier::classify(text),
                    "the router's in-process classifier",
                )
            }
        };
        let task = request.task.unwrap_or(verdict.task);
        let difficulty = request.difficulty.unwrap_or(verdict.difficulty);
        Classified {
            task,
            difficulty: Some(difficulty),
            confidence: Some(verdict.confidence),
            // A declared difficulty is routed as declared, whatever the score.
            needs_strong: verdict
                .needs_strong
                .filter(|_| request.difficulty.is_none()),
            by: Some(by),
        }
    }

    /// Runs a plan: the primary model, then the fallbacks while time remains,
    /// then escalation when the answer fails the rule's check.
    pub(crate) async fn execute(
        &self,
        plan: Plan,
        call: &Call<'_>,
    ) -> Result<RouteResponse, RouterError> {
        let result = self.run_chain(&plan, call).await;
        if let Ok(answer) = &result {
            let served = answer
                .route
                .attempts
                .iter()
                .rev()
                .find(|a| a.outcome == "ok")
                .map_or(plan.decision.primary.model.id.as_str(), |a| {
                    a.model.as_str()
                });
            self.remember(&plan, call, &answer.route, served).await;
        }
        let (provider, outcome) = match &result {
            Ok(r) => (r.provider.clone(), "ok"),
            Err(e) => (
                plan.decision.primary.model.provider.clone(),
                e.metric_label(),
            ),
        };
        self.requests
            .with_label_values(&[plan.task.as_str(), &provider, outcome])
            .inc();
        self.duration
            .with_label_values(&[plan.task.as_str()])
            .observe(call.received_at.elapsed().as_secs_f64());
        result
    }

    async fn run_chain(&self, plan: &Plan, call: &Call<'_>) -> Result<RouteResponse, RouterError> {
        let mut explanation = plan.explanation();
        let attempted = self
            .run_attempts(plan, call, &mut explanation, |model, slice| {
                self.call_candidate(plan, model, call, slice)
            })
            .await?;
        let (model, started, answer) = (attempted.model, attempted.started, attempted.value);
        self.settle(plan, model, started, &answer);
        drop(attempted.admission);
        explanation.attempts.push(attempt(model, "ok", started));
        let answer = if attempted.position == 0 {
            self.escalate_if_needed(plan, model, answer, &mut explanation, call)
                .await
        } else {
            answer
        };
        Ok(self.response(plan, call, answer, explanation))
    }

    async fn escalate_if_needed(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        answer: Answer,
        explanation: &mut RouteExplanation,
        call: &Call<'_>,
    ) -> Answer {
        let Some(escalation) = &plan.decision.escalation else {
            return answer;
        };
        let (Some(text), Some(finish)) = (&answer.output, answer.finish_reason) else {
            return answer;
        };
        let (answer, reason) = match needs_escalation(&escalation.check, text, finish) {
            Some(reason) => {
                let label = serde_json::to_value(&reason)
                    .ok()
                    .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "other".to_owned());
                self.escalations.with_label_values(&[&label]).inc();
                (answer, reason.to_string())
            }
            // The answer passed the checks: the cascade, when on, judges it.
            None => match self.judge(plan, model, answer, explanation, call).await {
                (answer, Some(reason)) => {
                    self.escalations.with_label_values(&["cascade"]).inc();
                    (answer, reason)
                }
                (answer, None) => return answer,
            },
        };
        let stronger = &escalation.to.model;
        let started = Instant::now();
        match self.call_model(plan, stronger, call).await {
            Ok(better) => {
                self.settle(plan, stronger, started, &better);
                explanation.attempts.push(attempt(stronger, "ok", started));
                explanation.escalated = Some(Escalated {
                    from: model.id.clone(),
                    reason,
                });
                // The caller pays for both calls.
                Answer {
                    cost_usd: better.cost_usd.map(|c| c + answer.cost_usd.unwrap_or(0.0)),
                    ..better
                }
            }
            Err(error) => {
                explanation
                    .attempts
                    .push(attempt(stronger, error.metric_label(), started));
                answer
            }
        }
    }

    /// Records a successful call: live latency, spend.
    fn settle(&self, plan: &Plan, model: &ModelEntry, started: Instant, answer: &Answer) {
        self.live.observe(&model.id, started.elapsed(), true);
        if let (Some(tenant), Some(cost)) = (&plan.request.tenant, answer.cost_usd) {
            self.budgets.record(tenant, cost, SystemTime::now());
        }
    }

    /// Records the end of a stream: its latency and spend unless `settled`
    /// already (a buffered answer's were recorded call by call); `failure` is
    /// its error event, if it ended with one (only the provider's own faults
    /// count against the model).
    #[expect(
        clippy::too_many_arguments,
        reason = "the stream's end as the handler saw it; a struct for it is pending"
    )]
    pub(crate) fn settle_stream(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        started: Instant,
        ok: bool,
        cost_usd: Option<f64>,
        failure: Option<&routing_core::api::ErrorDetail>,
        settled: bool,
    ) {
        if !settled {
            if ok {
                self.live.observe(&model.id, started.elapsed(), true);
            } else if let Some(cause) = resilience::stream_fault(failure) {
                self.live
                    .observe_fault(&model.id, started.elapsed(), &cause);
            }
            if let (Some(tenant), Some(cost)) = (&plan.request.tenant, cost_usd) {
                self.budgets.record(tenant, cost, SystemTime::now());
            }
        }
        let outcome = if ok { "ok" } else { "stream_error" };
        self.requests
            .with_label_values(&[plan.task.as_str(), &model.provider, outcome])
            .inc();
    }

    fn response(
        &self,
        plan: &Plan,
        call: &Call<'_>,
        answer: Answer,
        route: RouteExplanation,
    ) -> RouteResponse {
        RouteResponse {
            id: call.id.to_owned(),
            task: plan.task,
            difficulty: plan.difficulty,
            provider: answer.provider,
            model: answer.model,
            output: answer.output,
            embeddings: answer.embeddings,
            finish_reason: answer.finish_reason,
            usage: answer.usage,
            cost_usd: answer.cost_usd,
            latency_ms: millis(call.received_at.elapsed()),
            route,
        }
    }

    fn proxy_request(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        timeout: Duration,
        stream: bool,
        sample: Sample,
    ) -> ProxyRequest {
        let (messages, stop) = match sample.messages {
            Some(messages) => (messages, Vec::new()),
            None => (plan.request.messages.clone(), plan.request.stop.clone()),
        };
        ProxyRequest {
            provider: model.provider.clone(),
            model: model.model.clone(),
            task: plan.task,
            private: plan.request.private,
            messages,
            max_tokens: sample.max_tokens.or(plan.request.max_tokens),
            temperature: sample.temperature.or(plan.request.temperature),
            stop,
            timeout_ms: Some(millis(timeout).max(1)),
            start_timeout_ms: None,
            stream,
            options: routing_core::chat::GenerationOptions {
                seed: sample
                    .seed
                    .map(|seed| i64::from_ne_bytes(seed.to_ne_bytes()))
                    .or(plan.request.options.seed),
                ..plan.request.options.clone()
            },
            logprobs: sample.logprobs,
        }
    }

    /// Calls `model` once with all the budget that is left.
    async fn call_model(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        call: &Call<'_>,
    ) -> Result<Answer, RouterError> {
        self.call_model_with(plan, model, call, Sample::default())
            .await
    }

    /// [`Self::call_model`] with a seed, temperature or log-probabilities,
    /// with all the budget that is left.
    async fn call_model_with(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        call: &Call<'_>,
        sample: Sample,
    ) -> Result<Answer, RouterError> {
        let remaining = plan.deadline.saturating_duration_since(Instant::now());
        let slice = self.attempts.slice(remaining, 0.0, true);
        self.call_model_within(plan, model, call, slice, sample)
            .await
    }

    /// Calls `model` once, within the attempt's slice of the budget.
    async fn call_model_within(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        call: &Call<'_>,
        slice: Slice,
        sample: Sample,
    ) -> Result<Answer, RouterError> {
        let function = match model.target {
            ServingFunction::Embed => "embed",
            ServingFunction::ProviderProxy => "provider-proxy",
        };
        if slice.timeout.is_zero() {
            return Err(RouterError::BudgetExhausted {
                budget_ms: plan.request.max_latency_ms,
                during: format!("before calling {function}"),
            });
        }
        let remaining = slice.timeout;
        match model.target {
            ServingFunction::Embed => {
                let input = if plan.request.inputs.is_empty() {
                    plan.request
                        .messages
                        .iter()
                        .map(|m| m.content.clone())
                        .collect()
                } else {
                    plan.request.inputs.clone()
                };
                let answer: EmbedFunctionResponse = self
                    .functions
                    .invoke(
                        function,
                        "/",
                        &EmbedFunctionRequest { input: Some(input) },
                        call.id,
                        remaining,
                    )
                    .await
                    .map_err(RouterError::from)?;
                Ok(Answer {
                    provider: answer.provider,
                    model: answer.model,
                    output: None,
                    embeddings: Some(answer.embeddings),
                    finish_reason: None,
                    usage: answer.usage,
                    cost_usd: Some(0.0),
                    logprobs: None,
                })
            }
            ServingFunction::ProviderProxy => {
                let request = self.proxy_request(
                    plan,
                    model,
                    proxy_timeout(remaining, &slice),
                    false,
                    sample,
                );
                let answer: ProxyResponse = self
                    .functions
                    .invoke(function, "/", &request, call.id, remaining)
                    .await
                    .map_err(RouterError::from)?;
                Ok(Answer {
                    provider: answer.provider,
                    model: answer.model,
                    output: Some(answer.text),
                    embeddings: None,
                    finish_reason: Some(answer.finish_reason),
                    usage: answer.usage,
                    cost_usd: answer.cost_usd,
                    logprobs: answer.logprobs,
                })
            }
        }
    }

    /// Starts a stream on the first model of the chain that accepts it; a
    /// failure after the stream started is the stream's last event. The
    /// attempt's slice bounds the wait for the stream to start; the stream
    /// itself may take what is left of the budget.
    pub(crate) async fn execute_stream(
        &self,
        plan: &Plan,
        call: &Call<'_>,
    ) -> Result<RoutedStream, RouterError> {
        if self.cascade_scope(plan).is_some() {
            return self.buffered_stream(plan, call).await;
        }
        if plan
            .decision
            .chain()
            .any(|c| c.model.target != ServingFunction::ProviderProxy)
        {
            return Err(RouterError::Invalid(routing_core::api::InvalidRequest {
                param: Some("stream".to_owned()),
                message: "only generated text is streamed".to_owned(),
            }));
        }
        let mut explanation = plan.explanation();
        let attempted = self
            .run_attempts(plan, call, &mut explanation, |model, slice| {
                self.start_stream(plan, model, call, slice)
            })
            .await?;
        explanation
            .attempts
            .push(attempt(attempted.model, "ok", attempted.started));
        Ok(RoutedStream {
            model: Arc::clone(attempted.model),
            explanation,
            events: attempted.value,
            started: attempted.started,
            settled: false,
        })
    }

    async fn start_stream(
        &self,
        plan: &Plan,
        model: &ModelEntry,
        call: &Call<'_>,
        slice: Slice,
    ) -> Result<EventStream, RouterError> {
        if slice.remaining.is_zero() {
            return Err(RouterError::BudgetExhausted {
                budget_ms: plan.request.max_latency_ms,
                during: "before the stream started".to_owned(),
            });
        }
        let whole = Slice {
            timeout: slice.remaining,
            ..slice
        };
        let mut request = self.proxy_request(
            plan,
            model,
            proxy_timeout(slice.remaining, &whole),
            true,
            Sample::default(),
        );
        if slice.timeout < slice.remaining {
            // provider-proxy reports a provider that does not start in time
            // itself, before the router gives up on it.
            request.start_timeout_ms = Some(millis(proxy_timeout(slice.timeout, &slice)).max(1));
        }
        let started =
            self.functions
                .invoke_stream("provider-proxy", "/", &request, call.id, slice.remaining);
        match tokio::time::timeout(slice.timeout, started).await {
            Ok(result) => result.map_err(RouterError::from),
            Err(_) => Err(RouterError::from(InvokeError::Timeout {
                function: "provider-proxy".to_owned(),
                timeout_ms: millis(slice.timeout),
            })),
        }
    }
}

/// One attempt of the chain, as the caller sees it.
pub(crate) fn attempt(model: &ModelEntry, outcome: &str, started: Instant) -> Attempt {
    Attempt {
        model: model.id.clone(),
        outcome: outcome.to_owned(),
        latency_ms: millis(started.elapsed()),
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use routing_core::policy::EscalationReason;

    use super::ESCALATION_REASONS;

    #[test]
    fn every_escalation_reason_has_a_series_from_start_up() {
        let phrase = String::from("x");
        for reason in [
            EscalationReason::Empty,
            EscalationReason::Truncated,
            EscalationReason::Refusal {
                phrase: phrase.clone(),
            },
            EscalationReason::ContentFilter,
            EscalationReason::LowConfidence { phrase },
        ] {
            let value = serde_json::to_value(&reason).unwrap();
            let kind = value["kind"].as_str().unwrap();
            assert!(ESCALATION_REASONS.contains(&kind), "{kind}");
        }
    }
}
