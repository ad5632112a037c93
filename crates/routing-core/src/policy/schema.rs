//! The policy file's format: its tables and keys, with their defaults.
//! Every table refuses unknown keys; compiling the policy checks the values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::budget::{BudgetLimit, OnBudget};
use super::calibration::{CalibrationConfig, TargetShare};
use super::catalogue::{ServingFunction, Tiers};
use super::escalation::EscalationCheck;
use super::learning::LearningConfig;
use super::live::LiveConfig;
use crate::chat::Locality;
use crate::task::{Difficulty, Task};

/// How much quality, expected cost and expected latency count when ranking
/// candidates: `score = quality·q − cost·(usd / cost_unit_usd) −
/// latency·(ms / latency_unit_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight of the expected quality in `[0, 1]`.
    pub quality: f64,
    /// Weight of the expected cost.
    pub cost: f64,
    /// Weight of the expected latency.
    pub latency: f64,
}

impl Weights {
    /// Only cost counts.
    pub const COST_FIRST: Weights = Weights {
        quality: 0.0,
        cost: 1.0,
        latency: 0.0,
    };
}

/// Weights per classified difficulty (the policy file's `[weights]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DifficultyWeights {
    /// When the difficulty is unknown (the caller declared the task).
    pub default: Weights,
    /// Simple prompts.
    pub simple: Weights,
    /// Medium prompts.
    pub medium: Weights,
    /// Hard prompts.
    pub hard: Weights,
}

impl DifficultyWeights {
    /// The weights for a difficulty.
    pub fn get(&self, difficulty: Option<Difficulty>) -> Weights {
        match difficulty {
            None => self.default,
            Some(Difficulty::Simple) => self.simple,
            Some(Difficulty::Medium) => self.medium,
            Some(Difficulty::Hard) => self.hard,
        }
    }
}

impl Default for DifficultyWeights {
    fn default() -> Self {
        Self {
            default: Weights {
                quality: 0.6,
                cost: 0.3,
                latency: 0.1,
            },
            simple: Weights {
                quality: 0.3,
                cost: 0.6,
                latency: 0.1,
            },
            medium: Weights {
                quality: 0.6,
                cost: 0.3,
                latency: 0.1,
            },
            hard: Weights {
                quality: 0.9,
                cost: 0.05,
                latency: 0.05,
            },
        }
    }
}

/// What to do when no candidate of any matching rule meets the latency
/// budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMiss {
    /// Route anyway, by the first rule that has candidates meeting every
    /// other constraint; the decision says the latency was relaxed.
    #[default]
    BestEffort,
    /// Refuse: no route.
    Reject,
}

/// Expected output tokens per task, when the request sets no maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputTokens {
    /// Embeddings generate nothing.
    pub embed: u32,
    /// A label.
    pub classify: u32,
    /// A paragraph or two.
    pub generate: u32,
    /// A worked answer.
    pub reason: u32,
}

impl OutputTokens {
    /// The expectation for `task`.
    pub fn get(&self, task: Task) -> u32 {
        match task {
            Task::Embed => self.embed,
            Task::Classify => self.classify,
            Task::Generate => self.generate,
            Task::Reason => self.reason,
        }
    }
}

impl Default for OutputTokens {
    fn default() -> Self {
        Self {
            embed: 0,
            classify: 16,
            generate: 256,
            reason: 1024,
        }
    }
}

/// Selection settings (the policy file's `[selection]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// Most fallbacks returned after the primary.
    pub max_fallbacks: usize,
    /// What happens when nothing meets the latency budget.
    pub on_latency_miss: LatencyMiss,
    /// USD per request that costs one unit of score at weight 1.
    pub cost_unit_usd: f64,
    /// Milliseconds that cost one unit of score at weight 1.
    pub latency_unit_ms: f64,
    /// The tier whose quality scores apply when the difficulty is unknown.
    pub unknown_difficulty: Difficulty,
    /// Quality floor applied to every request (the request may raise it).
    pub quality_floor: f32,
    /// Expected output tokens when the request sets no maximum.
    pub output_tokens: OutputTokens,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        Self {
            max_fallbacks: 2,
            on_latency_miss: LatencyMiss::BestEffort,
            cost_unit_usd: 0.01,
            latency_unit_ms: 10_000.0,
            unknown_difficulty: Difficulty::Medium,
            quality_floor: 0.0,
            output_tokens: OutputTokens::default(),
        }
    }
}

/// How a budget downgrade ranks and caps candidates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DowngradeConfig {
    /// Ranking weights while downgraded (cost-first by default).
    pub weights: Weights,
    /// Candidates expected to cost more than this per request are dropped.
    pub max_cost_usd: Option<f64>,
    /// Quality floor kept even while downgraded.
    pub quality_floor: f32,
}

impl Default for DowngradeConfig {
    fn default() -> Self {
        Self {
            weights: Weights::COST_FIRST,
            max_cost_usd: None,
            quality_floor: 0.0,
        }
    }
}

/// Budget gates (the policy file's `[budgets]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetPolicy {
    /// Share of a limit, in `(0, 1]`, from which a tenant is near it.
    pub near_at: f64,
    /// What happens near a limit.
    pub on_near: OnBudget,
    /// What happens over a limit.
    pub on_over: OnBudget,
    /// HTTP status of a budget rejection: 402 or 429.
    pub reject_status: u16,
    /// How a downgrade ranks and caps.
    pub downgrade: DowngradeConfig,
    /// Limits per tenant.
    pub limit: Vec<BudgetLimit>,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        Self {
            near_at: 0.8,
            on_near: OnBudget::Downgrade,
            on_over: OnBudget::Reject,
            reject_status: 402,
            downgrade: DowngradeConfig::default(),
            limit: Vec::new(),
        }
    }
}

impl BudgetPolicy {
    /// The limits that apply to `tenant`: its own entry, else `*`.
    pub fn limits_for(&self, tenant: &str) -> Option<&BudgetLimit> {
        self.limit
            .iter()
            .find(|l| l.tenant == tenant)
            .or_else(|| self.limit.iter().find(|l| l.tenant == "*"))
    }
}

/// When a rule applies. Every condition given must hold; an empty `when`
/// matches every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The task is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Vec<Task>>,
    /// The classified difficulty is one of these (unknown never matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Vec<Difficulty>>,
    /// The request's `private` flag equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    /// The latency budget is below this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms_below: Option<u64>,
    /// The latency budget is at least this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms_at_least: Option<u64>,
    /// The tenant is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Vec<String>>,
    /// The classifier's confidence is below this (unknown never matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_below: Option<f32>,
}

/// How a rule orders the candidates that pass the hard constraints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rank {
    /// By score (weights); ties go to the cheaper, then the better, then the
    /// faster, then the earlier listed model.
    #[default]
    Score,
    /// In the order `models` lists them.
    Listed,
}

/// Cheap-first escalation of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    /// Stronger models, in order of preference; the first that passes the
    /// request's hard constraints is the escalation target.
    pub to: Vec<String>,
    /// The `[escalation.NAME]` check to apply (`default` is built in).
    #[serde(default = "default_check")]
    pub check: String,
}

fn default_check() -> String {
    "default".to_owned()
}

/// One routing rule. Rules are tried in file order; the first matching
/// rule with a candidate that passes every hard constraint decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Rule id, reported in the decision (e.g. `private_local`).
    pub name: String,
    /// When the rule applies.
    #[serde(default)]
    pub when: When,
    /// The candidate models by catalogue id; absent: the whole catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Keep only candidates of this locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// How candidates are ordered.
    #[serde(default)]
    pub rank: Rank,
    /// Ranking weights; absent: `[weights]` for the request's difficulty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    /// Quality floor for this rule (the highest floor in force applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_floor: Option<f32>,
    /// Try the primary first and escalate when its answer fails a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<Escalate>,
    /// The share of this rule's traffic per difficulty tier, with a score
    /// window of its own; only on a rule without a `when.difficulty`
    /// condition (the first matching rule that sets one applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_share: Option<TargetShare>,
    /// Why, in words; `{task}`, `{budget_ms}` and `{difficulty}` are filled
    /// in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PriceFile {
    pub(super) input: f64,
    pub(super) output: f64,
    pub(super) as_of: String,
    pub(super) source: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskQualityFile {
    #[serde(default)]
    pub(super) embed: Option<Tiers>,
    #[serde(default)]
    pub(super) classify: Option<Tiers>,
    #[serde(default)]
    pub(super) generate: Option<Tiers>,
    #[serde(default)]
    pub(super) reason: Option<Tiers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) provider: String,
    pub(super) model: String,
    #[serde(default)]
    pub(super) model_env: Option<String>,
    pub(super) locality: Locality,
    #[serde(default)]
    pub(super) target: ServingFunction,
    pub(super) tasks: Vec<Task>,
    pub(super) context_window: u32,
    pub(super) ttft_ms: f64,
    pub(super) tokens_per_s: f64,
    pub(super) quality: Tiers,
    #[serde(default)]
    pub(super) task_quality: TaskQualityFile,
    #[serde(default)]
    pub(super) price: Option<PriceFile>,
    #[serde(default = "yes")]
    pub(super) auto_route: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub(super) version: u32,
    #[serde(default)]
    pub(super) selection: SelectionConfig,
    #[serde(default)]
    pub(super) weights: DifficultyWeights,
    #[serde(default)]
    pub(super) live: LiveConfig,
    #[serde(default)]
    pub(super) budgets: BudgetPolicy,
    #[serde(default)]
    pub(super) escalation: BTreeMap<String, EscalationCheck>,
    #[serde(default)]
    pub(super) calibration: CalibrationConfig,
    #[serde(default)]
    pub(super) learning: LearningConfig,
    #[serde(default)]
    pub(super) cascade: super::cascade::CascadeConfig,
    pub(super) model: Vec<ModelFile>,
    pub(super) rule: Vec<Rule>,
}

/// The policy format version this build reads.
pub const POLICY_VERSION: u32 = 1;
