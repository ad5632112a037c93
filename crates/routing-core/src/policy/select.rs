//! Selection: hard constraints, scoring, fallbacks, budgets and escalation.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::budget::{BudgetAction, BudgetLevel, BudgetView, OnBudget, Period};
use super::catalogue::ModelEntry;
use super::compile::Compiled;
use super::escalation::EscalationCheck;
use super::learning::Learned;
use super::live::{BreakerState, LiveStats};
use super::schema::{LatencyMiss, Rank, Rule, Weights};
use crate::api::{PredictedQuality, QualitySource, RouteExplanation, ValidRequest};
use crate::chat::Locality;
use crate::task::{Difficulty, Task};

/// What a request asks of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionInput {
    /// The task (declared or classified).
    pub task: Task,
    /// Classified difficulty; `None` when the caller declared the task.
    pub difficulty: Option<Difficulty>,
    /// The classifier's confidence in `[0, 1]`, when classified.
    pub confidence: Option<f32>,
    /// End-to-end latency budget.
    pub max_latency_ms: u64,
    /// Never leave the cluster.
    pub private: bool,
    /// Most the caller will pay for this request, in USD.
    pub max_cost_usd: Option<f64>,
    /// Least acceptable expected quality in `[0, 1]`.
    pub quality_floor: Option<f32>,
    /// Estimated prompt tokens (see [`estimate_tokens`]).
    pub input_tokens: u32,
    /// The caller's cap on generated tokens.
    pub max_output_tokens: Option<u32>,
    /// Tenant or workflow tag, for budgets and `when.tenant`.
    pub tenant: Option<String>,
    /// A catalogue id (or a model name unique in the catalogue) the caller
    /// pinned; no other model is considered.
    pub pinned: Option<String>,
}

impl SelectionInput {
    /// What `request` asks of the policy once its task is known: the task
    /// served and, when classify was consulted, its difficulty and
    /// confidence; the rest comes from the request itself.
    pub fn for_request(
        request: &ValidRequest,
        task: Task,
        difficulty: Option<Difficulty>,
        confidence: Option<f32>,
    ) -> Self {
        Self {
            task,
            difficulty,
            confidence,
            max_latency_ms: request.max_latency_ms,
            private: request.private,
            max_cost_usd: request.max_cost_usd,
            quality_floor: request.quality,
            input_tokens: request_tokens(request),
            max_output_tokens: request.max_tokens,
            tenant: request.tenant.clone(),
            pinned: request.pinned.clone(),
        }
    }

    /// A request for `task` with a latency budget and privacy flag; every
    /// other field unset.
    pub fn new(task: Task, max_latency_ms: u64, private: bool) -> Self {
        Self {
            task,
            difficulty: None,
            confidence: None,
            max_latency_ms,
            private,
            max_cost_usd: None,
            quality_floor: None,
            input_tokens: 0,
            max_output_tokens: None,
            tenant: None,
            pinned: None,
        }
    }
}

/// Estimated prompt tokens of a request: its messages and the inputs to
/// embed.
pub fn request_tokens(request: &ValidRequest) -> u32 {
    request
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .chain(request.inputs.iter().map(String::as_str))
        .map(estimate_tokens)
        .fold(0u32, u32::saturating_add)
}

/// A rough token count for `text` (about four characters a token), for
/// [`SelectionInput::input_tokens`].
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

fn serialize_model_id<S: Serializer>(model: &Arc<ModelEntry>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Summary<'a> {
        id: &'a str,
        provider: &'a str,
        model: &'a str,
        locality: Locality,
    }
    Summary {
        id: &model.id,
        provider: &model.provider,
        model: &model.model,
        locality: model.locality,
    }
    .serialize(s)
}

/// A model that passed the hard constraints, with what selection expects
/// of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The catalogue entry.
    #[serde(serialize_with = "serialize_model_id")]
    pub model: Arc<ModelEntry>,
    /// Expected latency in milliseconds (live EWMA when trusted, else the
    /// static prior).
    pub expected_latency_ms: f64,
    /// Whether `expected_latency_ms` is measured rather than the prior.
    pub live_latency: bool,
    /// Expected cost in USD.
    pub expected_cost_usd: f64,
    /// Expected quality in `[0, 1]`: the learned prediction once enough
    /// feedback was observed, else the static prior.
    pub quality: f32,
    /// The policy's static quality for this request.
    pub prior_quality: f32,
    /// Where `quality` comes from.
    pub quality_source: QualitySource,
    /// Feedback observations of this model in this request's context.
    pub observations: u64,
    /// The ranking score (higher is better).
    pub score: f64,
}

/// Why a model was not selected.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectReason {
    /// A private request and a model outside the cluster.
    Private,
    /// The model does not serve the task.
    TaskUnsupported {
        /// The task.
        task: Task,
    },
    /// Prompt plus output do not fit.
    ContextWindow {
        /// Tokens needed.
        needed: u64,
        /// The model's window.
        window: u32,
    },
    /// Too slow for the budget.
    Latency {
        /// Expected (percentile when live, else prior) milliseconds.
        expected_ms: f64,
        /// The budget.
        budget_ms: u64,
        /// Whether the expectation is measured.
        live: bool,
    },
    /// Dearer than the caller's cap.
    Cost {
        /// Expected USD.
        expected_usd: f64,
        /// The cap.
        cap_usd: f64,
    },
    /// Below the quality floor.
    Quality {
        /// Expected quality.
        quality: f32,
        /// The floor in force.
        floor: f32,
    },
    /// The model's circuit breaker is open.
    BreakerOpen {
        /// Milliseconds until a trial call.
        retry_in_ms: u64,
        /// The provider fault that opened it, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_cause: Option<String>,
    },
    /// Too dear for the tenant's remaining budget or the downgrade cap.
    Budget {
        /// Expected USD.
        expected_usd: f64,
        /// What may still be spent on this request.
        allowed_usd: f64,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Private => {
                f.write_str("runs outside the cluster and the request is private")
            }
            RejectReason::TaskUnsupported { task } => write!(f, "does not serve {task}"),
            RejectReason::ContextWindow { needed, window } => {
                write!(f, "needs {needed} tokens of context, has {window}")
            }
            RejectReason::Latency {
                expected_ms,
                budget_ms,
                live,
            } => write!(
                f,
                "expected {expected_ms:.0} ms ({}) exceeds the {budget_ms} ms budget",
                if *live { "measured" } else { "prior" }
            ),
            RejectReason::Cost {
                expected_usd,
                cap_usd,
            } => write!(
                f,
                "expected ${expected_usd:.6} exceeds the ${cap_usd:.6} cap"
            ),
            RejectReason::Quality { quality, floor } => {
                write!(f, "quality {quality:.2} is below the floor {floor:.2}")
            }
            RejectReason::BreakerOpen {
                retry_in_ms,
                last_cause,
            } => match last_cause {
                Some(cause) => write!(
                    f,
                    "circuit breaker open after {cause} (retry in {retry_in_ms} ms)"
                ),
                None => write!(f, "circuit breaker open (retry in {retry_in_ms} ms)"),
            },
            RejectReason::Budget {
                expected_usd,
                allowed_usd,
            } => write!(
                f,
                "expected ${expected_usd:.6} exceeds the ${allowed_usd:.6} the budget allows"
            ),
        }
    }
}

/// A model left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// Catalogue id.
    pub model: String,
    /// The rule that considered it first.
    pub rule: String,
    /// Why it was left out.
    pub reason: RejectReason,
}

/// Cheap-first escalation: the check the primary's answer must pass, and
/// the model to retry with when it does not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Escalation {
    /// The check's name in the policy.
    pub check_name: String,
    /// The check, for [`super::needs_escalation`].
    pub check: EscalationCheck,
    /// The stronger model (it passed the same hard constraints).
    pub to: Candidate,
}

/// The routing decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The model to call first.
    pub primary: Candidate,
    /// Models to try in order when the primary fails; they obey the same
    /// hard constraints.
    pub fallbacks: Vec<Candidate>,
    /// Models considered and left out.
    pub rejected: Vec<Rejection>,
    /// The deciding rule.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// The difficulty the weights and quality scores were taken for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    /// The ranking weights used.
    pub weights: Weights,
    /// Nothing met the latency budget; the route is best effort.
    pub latency_relaxed: bool,
    /// The budget gate applied, if the tenant is near or over a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetAction>,
    /// Cheap-first escalation, when the rule asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// The primary is an exploration (see [`super::explore`]), not the
    /// top-ranked candidate.
    pub explored: bool,
}

impl Decision {
    /// The rule and reason, as the router reports them.
    pub fn explanation(&self) -> RouteExplanation {
        RouteExplanation {
            rule: self.rule.clone(),
            reason: self.reason.clone(),
            model: self.primary.model.id.clone(),
            fallbacks: self.fallbacks.iter().map(|c| c.model.id.clone()).collect(),
            rejected: self
                .rejected
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            latency_relaxed: self.latency_relaxed,
            budget: self
                .budget
                .as_ref()
                .and_then(|b| serde_json::to_value(b).ok()),
            predicted_quality: self
                .chain()
                .map(|c| PredictedQuality {
                    model: c.model.id.clone(),
                    quality: c.quality,
                    source: c.quality_source,
                    observations: c.observations,
                })
                .collect(),
            explored: self.explored,
            ..RouteExplanation::default()
        }
    }

    /// The primary, then the fallbacks.
    pub fn chain(&self) -> impl Iterator<Item = &Candidate> {
        std::iter::once(&self.primary).chain(&self.fallbacks)
    }
}

/// No model may serve the request.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct NoRoute {
    /// Every model considered, and why it was left out.
    pub rejected: Vec<Rejection>,
    /// A message for the caller.
    pub message: String,
    /// The suggested HTTP status: 402/429 for a budget (as configured), 404
    /// for an unknown pinned model, 503 when an open breaker kept out a model
    /// that could otherwise serve, otherwise 422 (the request's constraints
    /// cannot be met).
    pub status: u16,
    /// The budget gate, when a budget refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetAction>,
}

/// Per-request evaluation context.
struct Ctx<'a> {
    p: &'a Compiled,
    input: &'a SelectionInput,
    live: &'a LiveStats,
    learned: &'a Learned,
    output_tokens: u32,
    floor: f32,
    /// Downgrade ranking and cost cap, when a budget asks for it.
    downgrade: Option<(Weights, Option<f64>, f32)>,
    /// What the tenant may still spend.
    remaining_usd: Option<f64>,
    /// The rule-independent part of each model's check, computed once per
    /// request (rules and passes revisit the same models).
    cache: RefCell<Vec<Option<Result<Base, RejectReason>>>>,
}

/// What a model is expected to do for this request, once it passed the
/// rule-independent constraints.
#[derive(Clone, Copy)]
struct Base {
    cost: f64,
    quality: f32,
    prior_quality: f32,
    source: QualitySource,
    observations: u64,
    /// The latency the budget is checked against (percentile or prior).
    budget_ms: f64,
    /// The latency scored (EWMA or prior).
    scoring_ms: f64,
    live: bool,
}

/// The outcome of the hard constraints for one model.
enum Check {
    Pass(Candidate),
    /// Fails only the latency budget (usable when relaxed).
    SlowOnly(Candidate, RejectReason),
    Fail(RejectReason),
}

impl Ctx<'_> {
    /// The constraints that do not depend on the rule, in order: privacy,
    /// task, context window, breaker, cost cap, remaining budget, downgrade
    /// cap.
    fn base(&self, index: usize) -> Result<Base, RejectReason> {
        if let Some(Some(cached)) = self.cache.borrow().get(index) {
            return cached.clone();
        }
        let computed = self.compute_base(index);
        if let Some(slot) = self.cache.borrow_mut().get_mut(index) {
            *slot = Some(computed.clone());
        }
        computed
    }

    fn compute_base(&self, index: usize) -> Result<Base, RejectReason> {
        let Some(m) = self.p.models.get(index) else {
            return Err(RejectReason::TaskUnsupported {
                task: self.input.task,
            });
        };
        let input = self.input;
        if input.private && m.locality != Locality::InCluster {
            return Err(RejectReason::Private);
        }
        if !m.supports(input.task) {
            return Err(RejectReason::TaskUnsupported { task: input.task });
        }
        if input.task != Task::Embed {
            let needed = u64::from(input.input_tokens) + u64::from(self.output_tokens);
            if needed > u64::from(m.context_window) {
                return Err(RejectReason::ContextWindow {
                    needed,
                    window: m.context_window,
                });
            }
        }
        let (breaker, live) = self.live.status(&m.id);
        if let BreakerState::Open { retry_in_ms } = breaker {
            return Err(RejectReason::BreakerOpen {
                retry_in_ms,
                last_cause: self.live.last_cause(&m.id),
            });
        }
        let cost = m.expected_cost_usd(input.input_tokens, self.output_tokens);
        if let Some(cap) = input.max_cost_usd {
            if cost > cap {
                return Err(RejectReason::Cost {
                    expected_usd: cost,
                    cap_usd: cap,
                });
            }
        }
        if let Some(remaining) = self.remaining_usd {
            if cost > remaining {
                return Err(RejectReason::Budget {
                    expected_usd: cost,
                    allowed_usd: remaining.max(0.0),
                });
            }
        }
        if let Some((_, Some(cap), _)) = self.downgrade {
            if cost > cap {
                return Err(RejectReason::Budget {
                    expected_usd: cost,
                    allowed_usd: cap,
                });
            }
        }
        let prior_quality = m.quality.expected(
            input.task,
            input.difficulty,
            self.p.selection.unknown_difficulty,
            input.confidence,
        );
        let predicted = self.learned.predict(&m.id, prior_quality);
        let (budget_ms, scoring_ms) = match live {
            Some(l) => (l.percentile_ms, l.ewma_ms),
            None => {
                let prior = m.expected_latency_ms(self.output_tokens);
                (prior, prior)
            }
        };
        Ok(Base {
            cost,
            quality: predicted.quality,
            prior_quality,
            source: predicted.source,
            observations: predicted.observations,
            budget_ms,
            scoring_ms,
            live: live.is_some(),
        })
    }

    /// Every hard constraint for catalogue model `index`: the
    /// rule-independent ones, then the quality floor, then latency.
    fn check(&self, index: usize, floor: f32, weights: &Weights) -> Check {
        let (Some(m), base) = (self.p.models.get(index), self.base(index)) else {
            return Check::Fail(RejectReason::TaskUnsupported {
                task: self.input.task,
            });
        };
        let base = match base {
            Ok(base) => base,
            Err(reason) => return Check::Fail(reason),
        };
        if base.quality < floor {
            return Check::Fail(RejectReason::Quality {
                quality: base.quality,
                floor,
            });
        }
        let sel = &self.p.selection;
        let score = weights.quality * f64::from(base.quality)
            - weights.cost * base.cost / sel.cost_unit_usd
            - weights.latency * base.scoring_ms / sel.latency_unit_ms;
        let candidate = Candidate {
            model: m.clone(),
            expected_latency_ms: base.scoring_ms,
            live_latency: base.live,
            expected_cost_usd: base.cost,
            quality: base.quality,
            prior_quality: base.prior_quality,
            quality_source: base.source,
            observations: base.observations,
            score,
        };
        if base.budget_ms > self.input.max_latency_ms as f64 {
            return Check::SlowOnly(
                candidate,
                RejectReason::Latency {
                    expected_ms: base.budget_ms,
                    budget_ms: self.input.max_latency_ms,
                    live: base.live,
                },
            );
        }
        Check::Pass(candidate)
    }

    fn weights_for(&self, rule: &Rule) -> Weights {
        match self.downgrade {
            Some((w, _, _)) => w,
            None => rule
                .weights
                .unwrap_or_else(|| self.p.weights.get(self.input.difficulty)),
        }
    }

    fn floor_for(&self, rule: &Rule) -> f32 {
        let mut floor = self.floor.max(rule.quality_floor.unwrap_or(0.0));
        if let Some((_, _, down_floor)) = self.downgrade {
            // A downgrade keeps its own floor and never raises the caller's.
            floor = floor.min(self.floor.max(down_floor));
        }
        floor
    }

    /// The rule's candidates under `relaxed` latency, ranked; rejections of
    /// the strict pass are logged.
    fn evaluate(
        &self,
        rule_index: usize,
        relaxed: bool,
        log: &mut Vec<Rejection>,
    ) -> Vec<Candidate> {
        let rule = &self.p.rules[rule_index];
        let weights = self.weights_for(rule);
        let floor = self.floor_for(rule);
        let mut passed = Vec::new();
        for (order, &m) in self.p.rule_candidates[rule_index].iter().enumerate() {
            let model = &self.p.models[m];
            if rule.locality.is_some_and(|l| l != model.locality) {
                continue;
            }
            let outcome = self.check(m, floor, &weights);
            let reject = |log: &mut Vec<Rejection>, reason: RejectReason| {
                if !relaxed && !log.iter().any(|r| r.model == model.id) {
                    log.push(Rejection {
                        model: model.id.clone(),
                        rule: rule.name.clone(),
                        reason,
                    });
                }
            };
            match outcome {
                Check::Pass(c) => passed.push((order, m, c)),
                Check::SlowOnly(c, reason) => {
                    if relaxed {
                        passed.push((order, m, c));
                    } else {
                        reject(log, reason);
                    }
                }
                Check::Fail(reason) => reject(log, reason),
            }
        }
        let by_score = rule.rank == Rank::Score || self.downgrade.is_some();
        if by_score {
            passed.sort_by(|(oa, ma, a), (ob, mb, b)| {
                b.score
                    .total_cmp(&a.score)
                    .then(a.expected_cost_usd.total_cmp(&b.expected_cost_usd))
                    .then(b.quality.total_cmp(&a.quality))
                    .then(a.expected_latency_ms.total_cmp(&b.expected_latency_ms))
                    .then(oa.cmp(ob))
                    .then(ma.cmp(mb))
            });
        }
        passed.into_iter().map(|(_, _, c)| c).collect()
    }
}

fn fill(template: &str, input: &SelectionInput) -> String {
    template
        .replace("{task}", input.task.as_str())
        .replace("{budget_ms}", &input.max_latency_ms.to_string())
        .replace(
            "{difficulty}",
            input.difficulty.map_or("unknown", Difficulty::as_str),
        )
}

pub(super) fn matches(rule: &Rule, input: &SelectionInput) -> bool {
    let w = &rule.when;
    w.task.as_ref().is_none_or(|t| t.contains(&input.task))
        && w.difficulty
            .as_ref()
            .is_none_or(|d| input.difficulty.is_some_and(|x| d.contains(&x)))
        && w.private.is_none_or(|p| p == input.private)
        && w.max_latency_ms_below
            .is_none_or(|b| input.max_latency_ms < b)
        && w.max_latency_ms_at_least
            .is_none_or(|b| input.max_latency_ms >= b)
        && w.tenant.as_ref().is_none_or(|t| {
            input
                .tenant
                .as_ref()
                .is_some_and(|x| t.iter().any(|y| y == x))
        })
        && w.confidence_below
            .is_none_or(|b| input.confidence.is_some_and(|c| c < b))
}

/// A tenant's standing against its limits.
#[derive(Default)]
struct BudgetStanding {
    /// The worst level reached: level, period, spent, limit.
    level: Option<(BudgetLevel, Period, f64, f64)>,
    /// The least still to spend over the limited periods.
    remaining: Option<f64>,
}

fn budget_standing(p: &Compiled, tenant: &str, budgets: &BudgetView<'_>) -> BudgetStanding {
    let (Some(limits), Some(spent)) = (p.budgets.limits_for(tenant), budgets.spent(tenant)) else {
        return BudgetStanding::default();
    };
    let mut standing = BudgetStanding::default();
    for (period, used, limit) in [
        (Period::Daily, spent.day_usd, limits.daily_usd),
        (Period::Monthly, spent.month_usd, limits.monthly_usd),
    ] {
        let Some(limit) = limit else { continue };
        let left = limit - used;
        standing.remaining = Some(standing.remaining.map_or(left, |r: f64| r.min(left)));
        let level = if used >= limit {
            BudgetLevel::Over
        } else if used >= p.budgets.near_at * limit {
            BudgetLevel::Near
        } else {
            continue;
        };
        let worse = match standing.level {
            None => true,
            Some((l, _, u, lim)) => {
                (level == BudgetLevel::Over && l == BudgetLevel::Near)
                    || (level == l && used / limit > u / lim)
            }
        };
        if worse {
            standing.level = Some((level, period, used, limit));
        }
    }
    standing
}

/// What the budget gate leaves of a request that may go ahead.
#[derive(Default)]
struct Gate {
    /// The gate's verdict, when the tenant is near or over a limit.
    budget: Option<BudgetAction>,
    /// What the tenant may still spend, when that limits the choice.
    remaining_usd: Option<f64>,
    /// Downgrade ranking, cost cap and floor, when the gate asks for them.
    downgrade: Option<(Weights, Option<f64>, f32)>,
}

/// The budget gate: refuses a tenant the policy rejects, else says what
/// the tenant's standing changes about the selection.
fn budget_gate(
    p: &Compiled,
    input: &SelectionInput,
    budgets: &BudgetView<'_>,
) -> Result<Gate, NoRoute> {
    let Some(tenant) = &input.tenant else {
        return Ok(Gate::default());
    };
    let standing = budget_standing(p, tenant, budgets);
    let mut gate = Gate {
        remaining_usd: standing.remaining,
        ..Gate::default()
    };
    let Some((level, period, spent, limit)) = standing.level else {
        return Ok(gate);
    };
    let action = match level {
        BudgetLevel::Near => p.budgets.on_near,
        BudgetLevel::Over => p.budgets.on_over,
    };
    let verdict = BudgetAction {
        tenant: tenant.clone(),
        level,
        period,
        spent_usd: spent,
        limit_usd: limit,
        action,
        status: (action == OnBudget::Reject).then_some(p.budgets.reject_status),
    };
    if action == OnBudget::Reject {
        return Err(NoRoute {
            rejected: Vec::new(),
            message: format!(
                "tenant {tenant:?} has spent ${spent:.4} of its {} ${limit:.4} budget",
                match period {
                    Period::Daily => "daily",
                    Period::Monthly => "monthly",
                }
            ),
            status: p.budgets.reject_status,
            budget: Some(verdict),
        });
    }
    if action == OnBudget::Downgrade {
        let d = &p.budgets.downgrade;
        gate.downgrade = Some((d.weights, d.max_cost_usd, d.quality_floor));
    }
    // Over a limit and still served (as configured): what is left
    // (nothing) cannot gate; the downgrade cap, if any, does.
    if level == BudgetLevel::Over {
        gate.remaining_usd = None;
    }
    gate.budget = Some(verdict);
    Ok(gate)
}

/// Picks the primary and fallbacks for a request, as the module docs of
/// [`super`] describe.
pub(crate) fn select(
    p: &Compiled,
    input: &SelectionInput,
    live: &LiveStats,
    budgets: &BudgetView<'_>,
    learned: &Learned,
) -> Result<Decision, NoRoute> {
    let output_tokens = input
        .max_output_tokens
        .unwrap_or_else(|| p.selection.output_tokens.get(input.task));
    let floor = p
        .selection
        .quality_floor
        .max(input.quality_floor.filter(|f| f.is_finite()).unwrap_or(0.0));
    let gate = budget_gate(p, input, budgets)?;
    let ctx = Ctx {
        p,
        input,
        live,
        learned,
        output_tokens,
        floor,
        downgrade: gate.downgrade,
        remaining_usd: gate.remaining_usd,
        cache: RefCell::new(vec![None; p.models.len()]),
    };
    match &input.pinned {
        Some(pin) => ctx.select_pinned(pin, gate.budget),
        None => ctx.select_by_rules(gate.budget),
    }
}

impl Ctx<'_> {
    /// A pinned model: that model or nothing.
    fn select_pinned(&self, pin: &str, budget: Option<BudgetAction>) -> Result<Decision, NoRoute> {
        let (p, input) = (self.p, self.input);
        let mut rejected = Vec::new();
        let Some(model) = p.find_model(pin) else {
            return Err(NoRoute {
                rejected,
                message: format!("model {pin:?} is not in the catalogue"),
                status: 404,
                budget,
            });
        };
        let model = model.clone();
        let index = p.by_id.get(&model.id).copied().unwrap_or(usize::MAX);
        let weights = p.weights.get(input.difficulty);
        let outcome = self.check(index, self.floor, &weights);
        let (candidate, relaxed) = match outcome {
            Check::Pass(c) => (c, false),
            Check::SlowOnly(c, _) if p.selection.on_latency_miss == LatencyMiss::BestEffort => {
                (c, true)
            }
            Check::SlowOnly(_, reason) | Check::Fail(reason) => {
                let message = format!("pinned model {} {reason}", model.id);
                let status = status_for(std::slice::from_ref(&reason), p.budgets.reject_status);
                rejected.push(Rejection {
                    model: model.id.clone(),
                    rule: "pinned".to_owned(),
                    reason,
                });
                return Err(NoRoute {
                    rejected,
                    message,
                    status,
                    budget,
                });
            }
        };
        let reason = format!(
            "the caller pinned {}{}",
            model.id,
            if relaxed {
                "; it is not expected to meet the latency budget"
            } else {
                ""
            }
        );
        Ok(Decision {
            primary: candidate,
            fallbacks: Vec::new(),
            rejected,
            rule: "pinned".to_owned(),
            reason,
            difficulty: input.difficulty,
            weights,
            latency_relaxed: relaxed,
            budget,
            escalation: None,
            explored: false,
        })
    }

    /// The first matching rule with a candidate decides, strictly first,
    /// then (when the policy allows it) with the latency budget relaxed.
    fn select_by_rules(&self, budget: Option<BudgetAction>) -> Result<Decision, NoRoute> {
        let p = self.p;
        let matching: Vec<usize> = (0..p.rules.len())
            .filter(|&i| matches(&p.rules[i], self.input))
            .collect();
        let passes: &[bool] = match p.selection.on_latency_miss {
            LatencyMiss::BestEffort => &[false, true],
            LatencyMiss::Reject => &[false],
        };
        let mut rejected = Vec::new();
        for &relaxed in passes {
            for (k, &ri) in matching.iter().enumerate() {
                let Some((primary, fallbacks)) =
                    self.chain(ri, &matching[k + 1..], relaxed, &mut rejected)
                else {
                    continue;
                };
                rejected.retain(|r| {
                    r.model != primary.model.id && !fallbacks.iter().any(|f| f.model.id == r.model)
                });
                let rule = &p.rules[ri];
                let escalation = self.escalation(rule, &primary, relaxed);
                let reason = self.reason(
                    rule,
                    &primary,
                    relaxed,
                    budget.as_ref(),
                    escalation.as_ref(),
                );
                return Ok(Decision {
                    primary,
                    fallbacks,
                    rejected,
                    rule: rule.name.clone(),
                    reason,
                    difficulty: self.input.difficulty,
                    weights: self.weights_for(rule),
                    latency_relaxed: relaxed,
                    budget,
                    escalation,
                    explored: false,
                });
            }
        }
        Err(self.no_route(&matching, rejected, budget))
    }

    /// The primary and fallbacks of rule `rule_index`: the rest of the rule,
    /// then the candidates of the `later` matching rules, up to the policy's
    /// fallback limit. `None` when the rule has no candidate.
    fn chain(
        &self,
        rule_index: usize,
        later: &[usize],
        relaxed: bool,
        rejected: &mut Vec<Rejection>,
    ) -> Option<(Candidate, Vec<Candidate>)> {
        let max_fallbacks = self.p.selection.max_fallbacks;
        let mut chain = self.evaluate(rule_index, relaxed, rejected);
        if chain.is_empty() {
            return None;
        }
        for &later in later {
            if chain.len() > max_fallbacks {
                break;
            }
            let mut scratch = Vec::new();
            for c in self.evaluate(later, relaxed, &mut scratch) {
                if !chain.iter().any(|x| x.model.id == c.model.id) {
                    chain.push(c);
                }
            }
        }
        chain.truncate(max_fallbacks + 1);
        let primary = chain.remove(0);
        Some((primary, chain))
    }

    /// The rule's escalation target: the first of its `escalate.to` other
    /// than the primary that passes the request's hard constraints.
    fn escalation(&self, rule: &Rule, primary: &Candidate, relaxed: bool) -> Option<Escalation> {
        let esc = rule.escalate.as_ref()?;
        let check = self.p.escalation.get(&esc.check)?.clone();
        let weights = self.weights_for(rule);
        esc.to.iter().find_map(|id| {
            let &m = self.p.by_id.get(id)?;
            let model = &self.p.models[m];
            if model.id == primary.model.id {
                return None;
            }
            match self.check(m, self.floor, &weights) {
                Check::Pass(to) => Some(Escalation {
                    check_name: esc.check.clone(),
                    check: check.clone(),
                    to,
                }),
                Check::SlowOnly(to, _) if relaxed => Some(Escalation {
                    check_name: esc.check.clone(),
                    check: check.clone(),
                    to,
                }),
                _ => None,
            }
        })
    }

    /// Why the rule's primary was chosen, in words.
    fn reason(
        &self,
        rule: &Rule,
        primary: &Candidate,
        relaxed: bool,
        budget: Option<&BudgetAction>,
        escalation: Option<&Escalation>,
    ) -> String {
        let mut reason = rule.reason.as_deref().map_or_else(
            || format!("rule {} matched", rule.name),
            |t| fill(t, self.input),
        );
        reason.push_str(&format!(
            "; chose {} (quality {:.2}, ~${:.6}, ~{:.0} ms{})",
            primary.model.id,
            primary.quality,
            primary.expected_cost_usd,
            primary.expected_latency_ms,
            if primary.live_latency {
                " measured"
            } else {
                ""
            }
        ));
        if relaxed {
            reason.push_str(&format!(
                "; no allowed model is expected within {} ms, so this is best effort",
                self.input.max_latency_ms
            ));
        }
        if let Some(b) = budget {
            if b.action == OnBudget::Downgrade {
                reason.push_str(&format!(
                    "; downgraded: tenant {} is {} its budget",
                    b.tenant,
                    match b.level {
                        BudgetLevel::Near => "near",
                        BudgetLevel::Over => "over",
                    }
                ));
            }
        }
        if let Some(e) = escalation {
            reason.push_str(&format!(
                "; escalates to {} if the answer fails check {}",
                e.to.model.id, e.check_name
            ));
        }
        reason
    }

    /// No rule had a candidate: why, with the most telling status.
    fn no_route(
        &self,
        matching: &[usize],
        rejected: Vec<Rejection>,
        budget: Option<BudgetAction>,
    ) -> NoRoute {
        let (p, input) = (self.p, self.input);
        let reasons: Vec<RejectReason> = rejected.iter().map(|r| r.reason.clone()).collect();
        let status = status_for(&reasons, p.budgets.reject_status);
        let message = if matching.is_empty() {
            format!(
                "no rule of policy {} matches this {} request",
                p.origin, input.task
            )
        } else if input.private && rejected.iter().all(|r| r.reason == RejectReason::Private) {
            format!(
                "no in-cluster model serves {} and the request is private",
                input.task
            )
        } else {
            let mut m = format!("no model can serve this {} request:", input.task);
            for r in rejected.iter().take(8) {
                m.push_str(&format!(" {} {};", r.model, r.reason));
            }
            if rejected.len() > 8 {
                m.push_str(&format!(" and {} more", rejected.len() - 8));
            }
            m.trim_end_matches(';').to_owned()
        };
        NoRoute {
            rejected,
            message,
            status,
            budget,
        }
    }
}

/// 503 when an open breaker kept out a model that passed the request's
/// static constraints (privacy, task, context): it may serve again soon;
/// the budget's reject status (402 or 429) when only the tenant's budget
/// kept every model out; otherwise 422.
fn status_for(reasons: &[RejectReason], budget_status: u16) -> u16 {
    if reasons
        .iter()
        .any(|r| matches!(r, RejectReason::BreakerOpen { .. }))
    {
        503
    } else if !reasons.is_empty()
        && reasons
            .iter()
            .all(|r| matches!(r, RejectReason::Budget { .. }))
    {
        budget_status
    } else {
        422
    }
}
