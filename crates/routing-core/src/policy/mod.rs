//! The routing policy engine: a declarative policy file (model catalogue,
//! rules, weights, budgets, escalation checks), validated strictly and
//! reloadable, and the selection that applies it to each request.
//!
//! # Selection
//! 1. **Budget gate** ([`BudgetView`]): a tenant over a limit is refused
//!    (402/429) or downgraded, near a limit downgraded (cost-first ranking and
//!    a cost cap) or allowed, as `[budgets]` says.
//! 2. **Pinned** model ([`SelectionInput::pinned`]): that model alone, if it
//!    passes the hard constraints.
//! 3. **Rules**, in file order: the first matching rule with a candidate
//!    passing every hard constraint decides. Hard constraints: a private
//!    request only ever gets [`Locality::InCluster`] models; the model serves
//!    the task; prompt + output fit the context window; the circuit breaker is
//!    not open; the expected cost is within the caller's cap, the tenant's
//!    remaining budget and any downgrade cap; the expected quality reaches
//!    the floor; the expected latency (live percentile once enough calls
//!    were measured, else the static prior) is within the budget.
//! 4. If no rule has a candidate within the latency budget and
//!    `selection.on_latency_miss = "best_effort"`, the rules are tried again
//!    with only the latency constraint relaxed (the decision says so).
//! 5. Candidates are ranked by `rank`: listed order, or score
//!    `quality·q − cost·usd/cost_unit_usd − latency·ms/latency_unit_ms` with
//!    weights per difficulty. The first is the primary; the rest of the rule,
//!    then later matching rules' candidates, form the fallback chain (every
//!    one passed the same hard constraints).
//!
//! Prices come from the price catalogue (`config/prices.toml`, or
//! `PRICES_PATH`), which provider-proxy meters with, so routing estimates and
//! billed costs agree. A model the price catalogue lacks carries `price` in
//! the policy; a model listed in both must agree, or the policy is rejected.
//!
//! The default policy (`config/policy.toml`) reproduces the seed rule
//! (private/embed → in-cluster; classify/generate under 300 ms → Groq
//! `llama-3.1-8b-instant`; otherwise Vertex `gemini-2.5-flash`) and adds
//! difficulty tiers.

mod budget;
mod calibration;
mod cascade;
mod catalogue;
mod compile;
mod escalation;
mod learning;
mod live;
mod schema;
mod select;
mod watch;

use std::path::Path;
use std::sync::Arc;

pub use budget::{
    BudgetAction, BudgetLevel, BudgetLimit, BudgetStore, BudgetTracker, BudgetView, OnBudget,
    Period, Spend, utc_month,
};
pub use calibration::{
    Calibrated, CalibrationConfig, CalibrationScope, CalibrationSource, Calibrator, Cutoffs,
    MemoryWindows, ScopeKey, ScoreWindows, StoreError, StoreFuture, TargetShare, TenantTarget,
    WindowLimits, quantile_cutoffs, text_unit, window_key,
};
pub use cascade::{
    CascadeCalibrator, CascadeConfig, CascadeInvalid, CascadeRule, CascadeScope, CascadeSignal,
    CascadeThreshold, Combine, agreement, combine, escalation_threshold, judge_messages,
    normalised_words, parse_verdict, sample_agreement,
};
pub use catalogue::{
    LatencyPrior, ModelEntry, ModelPrice, PriceOrigin, Quality, ServingFunction, Tiers,
};
pub use compile::PolicyError;
pub use escalation::{EscalationCheck, EscalationReason, needs_escalation};
pub use learning::{
    ArmKey, ArmStats, ArmStore, Learned, Learner, LearningConfig, LearningContext, MemoryArms,
    Prediction, Rng, explore,
};
pub use live::{
    Admission, BreakerState, Clock, LiveConfig, LiveLatency, LiveStats, ManualClock, SystemClock,
};
pub use schema::{
    BudgetPolicy, DifficultyWeights, DowngradeConfig, Escalate, LatencyMiss, OutputTokens,
    POLICY_VERSION, Rank, Rule, SelectionConfig, Weights, When,
};
pub use select::{
    Candidate, Decision, Escalation, NoRoute, RejectReason, Rejection, SelectionInput,
    estimate_tokens, request_tokens,
};
pub use watch::{DEFAULT_RELOAD_SECS, PolicyWatcher, ReloadOutcome};

use crate::env::Env;
use crate::pricing::Catalogue;
use compile::Compiled;

/// The policy shipped with the fleet.
pub const DEFAULT_POLICY: &str = include_str!("../../config/policy.toml");
/// `POLICY_PATH`: a policy file replacing the built-in one (watched).
pub const ENV_POLICY_PATH: &str = "POLICY_PATH";
/// `POLICY_RELOAD_SECS`: how often `POLICY_PATH` is checked (0: never).
pub const ENV_POLICY_RELOAD_SECS: &str = "POLICY_RELOAD_SECS";
pub use crate::pricing::ENV_PRICES_PATH;
/// `LOCAL_CHAT_MODEL`: the Ollama model behind `ollama/local` in the
/// built-in policy (its `model_env`).
pub const ENV_LOCAL_CHAT_MODEL: &str = "LOCAL_CHAT_MODEL";

/// A validated policy: model catalogue, rules, weights, budgets and
/// escalation checks. Cheap to clone (one `Arc`), so it can be swapped on
/// reload while requests in flight keep the one they started with.
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Compiled>,
}

fn policy_error(origin: &str, message: String) -> PolicyError {
    PolicyError {
        origin: origin.to_owned(),
        line: None,
        column: None,
        field: None,
        message,
    }
}

/// The price catalogue from `PRICES_PATH`, else the built-in one.
pub(crate) fn prices_from_env(env: &Env) -> Result<Catalogue, PolicyError> {
    Catalogue::from_env(env).map_err(|e| policy_error(&e.origin, e.to_string()))
}

impl Policy {
    /// The built-in policy (`config/policy.toml`), priced by the built-in
    /// price catalogue.
    pub fn builtin() -> Result<Policy, PolicyError> {
        Self::parse(DEFAULT_POLICY, "built-in")
    }

    /// The built-in policy, priced by `prices`.
    pub fn builtin_with_prices(prices: &Catalogue) -> Result<Policy, PolicyError> {
        Self::parse_with_prices(DEFAULT_POLICY, "built-in", prices)
    }

    /// Parses and validates a policy, priced by the built-in price catalogue.
    /// Unknown keys, bad values and references to undefined models or
    /// checks are errors naming the line and field.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let prices = Catalogue::builtin().map_err(|e| policy_error(origin, e.to_string()))?;
        Self::parse_with_prices(text, origin, &prices)
    }

    /// Parses and validates a policy against the given price catalogue.
    pub fn parse_with_prices(
        text: &str,
        origin: &str,
        prices: &Catalogue,
    ) -> Result<Policy, PolicyError> {
        Ok(Policy {
            inner: Arc::new(compile::compile(text, origin, prices)?),
        })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| policy_error(&origin, format!("cannot read the policy file: {e}")))?;
        Self::parse(&text, &origin)
    }

    /// `POLICY_PATH` or the built-in policy, priced by `PRICES_PATH` or the
    /// built-in catalogue, with `model_env` overrides applied. For reloading,
    /// use [`PolicyWatcher::from_env`].
    pub fn from_env(env: &Env) -> Result<Policy, PolicyError> {
        let prices = prices_from_env(env)?;
        let policy = match env.get(ENV_POLICY_PATH) {
            None => Self::builtin_with_prices(&prices)?,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| policy_error(path, format!("cannot read the policy file: {e}")))?;
                Self::parse_with_prices(&text, path, &prices)?
            }
        };
        Ok(policy.with_env_models(env))
    }

    /// Replaces the `model` of every entry with a `model_env` variable set in
    /// `env` (the catalogue id and price stay as the file gives them).
    pub fn with_env_models(self, env: &Env) -> Policy {
        let overrides: Vec<(usize, String)> = self
            .inner
            .model_env
            .iter()
            .filter_map(|(i, var)| env.get(var).map(|v| (*i, v.to_owned())))
            .filter(|(i, v)| self.inner.models.get(*i).is_some_and(|m| &m.model != v))
            .collect();
        if overrides.is_empty() {
            return self;
        }
        let mut compiled = (*self.inner).clone();
        for (i, model) in overrides {
            if let Some(entry) = compiled.models.get_mut(i) {
                let mut changed = (**entry).clone();
                changed.model = model;
                *entry = Arc::new(changed);
            }
        }
        Policy {
            inner: Arc::new(compiled),
        }
    }

    /// Where the policy came from (file name or `built-in`).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Picks the primary model and fallbacks for a request.
    pub fn select(
        &self,
        input: &SelectionInput,
        live: &LiveStats,
        budgets: &BudgetView<'_>,
    ) -> Result<Decision, NoRoute> {
        select::select(&self.inner, input, live, budgets, &Learned::default())
    }

    /// Picks the primary model and fallbacks for a request, each model's
    /// quality predicted from what was `learned` (see [`Learner::view`]).
    pub fn select_learned(
        &self,
        input: &SelectionInput,
        live: &LiveStats,
        budgets: &BudgetView<'_>,
        learned: &Learned,
    ) -> Result<Decision, NoRoute> {
        select::select(&self.inner, input, live, budgets, learned)
    }

    /// Every catalogue model, in file order (for `GET /v1/models`).
    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.inner.models.iter().map(|m| &**m)
    }

    /// A model by catalogue id.
    pub fn model(&self, id: &str) -> Option<&ModelEntry> {
        self.inner
            .by_id
            .get(id)
            .and_then(|&i| self.inner.models.get(i))
            .map(|m| &**m)
    }

    /// A model by catalogue id, or by a provider model name (e.g.
    /// `gemini-2.5-flash`) that exactly one catalogue entry serves.
    pub fn find_model(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.inner.find_model(name)
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// Ranking weights per difficulty.
    pub fn weights(&self) -> &DifficultyWeights {
        &self.inner.weights
    }

    /// Selection settings.
    pub fn selection_config(&self) -> &SelectionConfig {
        &self.inner.selection
    }

    /// How [`LiveStats`] should be configured for this policy.
    pub fn live_config(&self) -> LiveConfig {
        self.inner.live
    }

    /// Budget gates and limits.
    pub fn budget_policy(&self) -> &BudgetPolicy {
        &self.inner.budgets
    }

    /// The `[calibration]` settings.
    pub fn calibration(&self) -> &CalibrationConfig {
        &self.inner.calibration
    }

    /// The score window and target share for a request (its difficulty is
    /// ignored: calibration decides it): the first rule in file order that
    /// matches and sets `target_share`, else the tenant's own target, else
    /// `[calibration].target_share`.
    pub fn calibration_scope(&self, input: &SelectionInput) -> CalibrationScope {
        // A rule with a target share has no difficulty condition (the
        // policy is refused otherwise), so the input's difficulty is moot.
        if let Some((rule, target)) = self
            .inner
            .rules
            .iter()
            .filter_map(|r| r.target_share.map(|t| (r, t)))
            .find(|(r, _)| select::matches(r, input))
        {
            return CalibrationScope {
                key: ScopeKey::Rule(rule.name.clone()),
                target,
            };
        }
        let cal = &self.inner.calibration;
        if let Some(t) = input
            .tenant
            .as_deref()
            .and_then(|name| cal.tenant.iter().find(|t| t.tenant == name))
        {
            return CalibrationScope {
                key: ScopeKey::Tenant(t.tenant.clone()),
                target: t.target_share,
            };
        }
        CalibrationScope {
            key: ScopeKey::Global,
            target: cal.target_share,
        }
    }

    /// The `[cascade]` settings.
    pub fn cascade(&self) -> &CascadeConfig {
        &self.inner.cascade
    }

    /// The `[learning]` settings.
    pub fn learning(&self) -> &LearningConfig {
        &self.inner.learning
    }

    /// An escalation check by name (`default` is always defined).
    pub fn escalation_check(&self, name: &str) -> Option<&EscalationCheck> {
        self.inner.escalation.get(name)
    }
}
