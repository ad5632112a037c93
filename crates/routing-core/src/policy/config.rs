//! The policy file: its format, strict parsing and validation, with errors
//! that name the line and field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::budget::{BudgetLimit, OnBudget};
use super::catalogue::{LatencyPrior, ModelEntry, ModelPrice, PriceOrigin, Quality, Target, Tiers};
use super::escalation::EscalationCheck;
use super::live::LiveConfig;
use crate::chat::Locality;
use crate::pricing::Catalogue;
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
    /// Why, in words; `{task}`, `{budget_ms}` and `{difficulty}` are filled
    /// in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    input: f64,
    output: f64,
    as_of: String,
    source: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskQualityFile {
    #[serde(default)]
    embed: Option<Tiers>,
    #[serde(default)]
    classify: Option<Tiers>,
    #[serde(default)]
    generate: Option<Tiers>,
    #[serde(default)]
    reason: Option<Tiers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    #[serde(default)]
    id: Option<String>,
    provider: String,
    model: String,
    #[serde(default)]
    model_env: Option<String>,
    locality: Locality,
    #[serde(default)]
    target: Target,
    tasks: Vec<Task>,
    context_window: u32,
    ttft_ms: f64,
    tokens_per_s: f64,
    quality: Tiers,
    #[serde(default)]
    task_quality: TaskQualityFile,
    #[serde(default)]
    price: Option<PriceFile>,
    #[serde(default = "yes")]
    auto_route: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    selection: SelectionConfig,
    #[serde(default)]
    weights: DifficultyWeights,
    #[serde(default)]
    live: LiveConfig,
    #[serde(default)]
    budgets: BudgetPolicy,
    #[serde(default)]
    escalation: BTreeMap<String, EscalationCheck>,
    model: Vec<ModelFile>,
    rule: Vec<Rule>,
}

/// The policy format version this build reads.
pub const POLICY_VERSION: u32 = 1;

/// A policy file failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// File name, or `built-in`.
    pub origin: String,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The offending field, e.g. `model[3].quality.hard` or `rule[2].models[0]`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A path into the document, e.g. `model[3].price.input`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl FieldPath {
    fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Key(key.to_owned()));
        next
    }

    fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Seg::Index(index));
        next
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Locates fields of the parsed document for error messages.
struct Locator<'t> {
    text: &'t str,
    root: Option<toml::Spanned<toml::de::DeValue<'t>>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        let root = toml::de::DeTable::parse(text).ok().map(|t| {
            let span = t.span();
            toml::Spanned::new(span, toml::de::DeValue::Table(t.into_inner()))
        });
        Self { text, root }
    }

    /// The span of the deepest part of `path` present in the document.
    fn span(&self, path: &FieldPath) -> Option<std::ops::Range<usize>> {
        let mut node = self.root.as_ref()?;
        let mut span = None;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => node.get_ref().get(k.as_str()),
                Seg::Index(i) => node.get_ref().get(*i),
            };
            match next {
                Some(n) => {
                    node = n;
                    span = Some(n.span());
                }
                None => break,
            }
        }
        span
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(1, |l| l.chars().count() + 1);
        (line, column)
    }
}

struct Checker<'t> {
    origin: String,
    locator: Locator<'t>,
}

impl Checker<'_> {
    fn error_at(
        &self,
        path: Option<&FieldPath>,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> PolicyError {
        let span = span.or_else(|| path.and_then(|p| self.locator.span(p)));
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = self.locator.line_column(s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        PolicyError {
            origin: self.origin.clone(),
            line,
            column,
            field: path.map(ToString::to_string).filter(|p| !p.is_empty()),
            message: message.into(),
        }
    }

    fn error(&self, path: &FieldPath, message: impl Into<String>) -> PolicyError {
        self.error_at(Some(path), None, message)
    }
}

/// A validated policy's parts.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub origin: String,
    pub models: Vec<Arc<ModelEntry>>,
    pub by_id: HashMap<String, usize>,
    pub model_env: Vec<(usize, String)>,
    pub rules: Vec<Rule>,
    /// Catalogue indexes of each rule's candidates, in listed order.
    pub rule_candidates: Vec<Vec<usize>>,
    pub weights: DifficultyWeights,
    pub selection: SelectionConfig,
    pub live: LiveConfig,
    pub budgets: BudgetPolicy,
    pub escalation: BTreeMap<String, EscalationCheck>,
}

impl Compiled {
    /// A model by catalogue id, or by a provider model name that exactly
    /// one catalogue entry serves.
    pub fn find_model(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        if let Some(&i) = self.by_id.get(name) {
            return self.models.get(i);
        }
        let mut found = self.models.iter().filter(|m| m.model == name);
        match (found.next(), found.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

fn unit(v: f32) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}

fn non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

fn check_weights(c: &Checker<'_>, path: &FieldPath, w: &Weights) -> Result<(), PolicyError> {
    for (name, v) in [
        ("quality", w.quality),
        ("cost", w.cost),
        ("latency", w.latency),
    ] {
        if !non_negative(v) {
            return Err(c.error(
                &path.key(name),
                format!("weight must be a finite number >= 0, not {v}"),
            ));
        }
    }
    if w.quality + w.cost + w.latency <= 0.0 {
        return Err(c.error(path, "at least one weight must be above 0"));
    }
    Ok(())
}

fn check_tiers(c: &Checker<'_>, path: &FieldPath, t: &Tiers) -> Result<(), PolicyError> {
    for (name, v) in [("simple", t.simple), ("medium", t.medium), ("hard", t.hard)] {
        if !unit(v) {
            return Err(c.error(
                &path.key(name),
                format!("quality must be between 0 and 1, not {v}"),
            ));
        }
    }
    Ok(())
}

/// Parses and validates a policy document.
pub(crate) fn compile(
    text: &str,
    origin: &str,
    prices: &Catalogue,
) -> Result<Compiled, PolicyError> {
    let checker = Checker {
        origin: origin.to_owned(),
        locator: Locator::new(text),
    };
    let c = &checker;
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| c.error_at(None, e.span(), e.message().to_owned()))?;
    let file: PolicyFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut path = FieldPath::default();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                serde_path_to_error::Segment::Map { key } => path = path.key(key),
                serde_path_to_error::Segment::Enum { variant } => path = path.key(variant),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = e.into_inner();
        let message = inner.message().to_owned();
        if let Some(field) = unknown_field(&message) {
            if path.0.last() != Some(&Seg::Key(field.clone())) {
                path = path.key(&field);
            }
        }
        // Prefer the field's own position; toml's span may cover its table.
        let span = c.locator.span(&path).or_else(|| inner.span());
        c.error_at(Some(&path), span, message)
    })?;
    let root = FieldPath::default();

    if file.version != POLICY_VERSION {
        return Err(c.error(
            &root.key("version"),
            format!(
                "version {} is not supported; this build reads version {POLICY_VERSION}",
                file.version
            ),
        ));
    }

    // [selection]
    let sel = &file.selection;
    let sp = root.key("selection");
    if !(sel.cost_unit_usd.is_finite() && sel.cost_unit_usd > 0.0) {
        return Err(c.error(&sp.key("cost_unit_usd"), "must be a finite number > 0"));
    }
    if !(sel.latency_unit_ms.is_finite() && sel.latency_unit_ms > 0.0) {
        return Err(c.error(&sp.key("latency_unit_ms"), "must be a finite number > 0"));
    }
    if !unit(sel.quality_floor) {
        return Err(c.error(&sp.key("quality_floor"), "must be between 0 and 1"));
    }

    // [weights]
    let wp = root.key("weights");
    for (name, w) in [
        ("default", &file.weights.default),
        ("simple", &file.weights.simple),
        ("medium", &file.weights.medium),
        ("hard", &file.weights.hard),
    ] {
        check_weights(c, &wp.key(name), w)?;
    }

    // [live]
    let lp = root.key("live");
    let live = &file.live;
    if !(live.ewma_alpha.is_finite() && live.ewma_alpha > 0.0 && live.ewma_alpha <= 1.0) {
        return Err(c.error(&lp.key("ewma_alpha"), "must be in (0, 1]"));
    }
    if !(live.percentile.is_finite() && live.percentile > 0.0 && live.percentile <= 1.0) {
        return Err(c.error(&lp.key("percentile"), "must be in (0, 1]"));
    }
    if live.window == 0 {
        return Err(c.error(&lp.key("window"), "must be at least 1"));
    }
    if live.min_samples > live.window {
        return Err(c.error(
            &lp.key("min_samples"),
            format!(
                "{} samples can never be reached with a window of {}",
                live.min_samples, live.window
            ),
        ));
    }
    if live.breaker_failures == 0 {
        return Err(c.error(&lp.key("breaker_failures"), "must be at least 1"));
    }

    // [escalation.*]
    let mut escalation = BTreeMap::new();
    escalation.insert("default".to_owned(), EscalationCheck::default());
    for (name, check) in &file.escalation {
        let ep = root.key("escalation").key(name);
        if let Some(i) = check
            .refusal_phrases
            .iter()
            .position(|p| p.trim().is_empty())
        {
            return Err(c.error(&ep.key("refusal_phrases").index(i), "phrase is empty"));
        }
        if let Some(i) = check
            .low_confidence_phrases
            .iter()
            .position(|p| p.trim().is_empty())
        {
            return Err(c.error(
                &ep.key("low_confidence_phrases").index(i),
                "phrase is empty",
            ));
        }
        escalation.insert(name.clone(), check.clone());
    }

    // [[model]]
    if file.model.is_empty() {
        return Err(c.error(&root.key("model"), "the catalogue lists no model"));
    }
    let mut models = Vec::with_capacity(file.model.len());
    let mut by_id = HashMap::new();
    let mut model_env = Vec::new();
    for (i, m) in file.model.into_iter().enumerate() {
        let mp = root.key("model").index(i);
        if m.provider.trim().is_empty() {
            return Err(c.error(&mp.key("provider"), "provider is empty"));
        }
        if m.model.trim().is_empty() {
            return Err(c.error(&mp.key("model"), "model is empty"));
        }
        let id =
            m.id.clone()
                .unwrap_or_else(|| format!("{}/{}", m.provider, m.model));
        if id.trim().is_empty() || id.trim() != id {
            return Err(c.error(
                &mp.key("id"),
                "id must be non-empty without surrounding spaces",
            ));
        }
        if by_id.insert(id.clone(), i).is_some() {
            return Err(c.error(
                &mp.key(if m.id.is_some() { "id" } else { "model" }),
                format!("model id {id:?} is listed twice"),
            ));
        }
        if m.tasks.is_empty() {
            return Err(c.error(&mp.key("tasks"), "a model serves at least one task"));
        }
        if m.context_window == 0 {
            return Err(c.error(&mp.key("context_window"), "must be at least 1"));
        }
        if !non_negative(m.ttft_ms) {
            return Err(c.error(&mp.key("ttft_ms"), "must be a finite number >= 0"));
        }
        if !(m.tokens_per_s.is_finite() && m.tokens_per_s > 0.0) {
            return Err(c.error(&mp.key("tokens_per_s"), "must be a finite number > 0"));
        }
        check_tiers(c, &mp.key("quality"), &m.quality)?;
        let mut by_task = Vec::new();
        for (task, tiers) in [
            (Task::Embed, m.task_quality.embed),
            (Task::Classify, m.task_quality.classify),
            (Task::Generate, m.task_quality.generate),
            (Task::Reason, m.task_quality.reason),
        ] {
            if let Some(tiers) = tiers {
                check_tiers(c, &mp.key("task_quality").key(task.as_str()), &tiers)?;
                if !m.tasks.contains(&task) {
                    return Err(c.error(
                        &mp.key("task_quality").key(task.as_str()),
                        format!("quality given for {task}, which the model does not serve"),
                    ));
                }
                by_task.push((task, tiers));
            }
        }
        if m.target == Target::Embed {
            if m.locality != Locality::InCluster {
                return Err(c.error(
                    &mp.key("locality"),
                    "the embed function runs in-cluster: its locality must be in_cluster",
                ));
            }
            if m.tasks != [Task::Embed] {
                return Err(c.error(&mp.key("tasks"), "the embed function only serves embed"));
            }
        }
        if m.model_env.as_ref().is_some_and(|n| n.trim().is_empty()) {
            return Err(c.error(&mp.key("model_env"), "variable name is empty"));
        }
        let listed = prices.price(&m.provider, &m.model);
        let price = match (&m.price, listed) {
            (Some(own), listed) => {
                let pp = mp.key("price");
                for (name, v) in [("input", own.input), ("output", own.output)] {
                    if !non_negative(v) {
                        return Err(c.error(&pp.key(name), "must be a finite number >= 0"));
                    }
                }
                if let Some(listed) = listed {
                    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
                    if !close(own.input, listed.input) || !close(own.output, listed.output) {
                        return Err(c.error(
                            &pp,
                            format!(
                                "price {}/{} per 1M tokens disagrees with the price catalogue ({}/{}, {}); \
                                 drop it here or fix one of them",
                                own.input, own.output, listed.input, listed.output, listed.source
                            ),
                        ));
                    }
                }
                ModelPrice {
                    input: own.input,
                    output: own.output,
                    as_of: own.as_of.clone(),
                    source: own.source.clone(),
                    origin: if listed.is_some() {
                        PriceOrigin::Catalogue
                    } else {
                        PriceOrigin::Policy
                    },
                }
            }
            (None, Some(listed)) => ModelPrice {
                input: listed.input,
                output: listed.output,
                as_of: listed.as_of.clone(),
                source: listed.source.clone(),
                origin: PriceOrigin::Catalogue,
            },
            (None, None) => {
                return Err(c.error(
                    &mp.key("model"),
                    format!(
                        "{}/{} has no price in the price catalogue; add it there or give `price` here",
                        m.provider, m.model
                    ),
                ));
            }
        };
        if let Some(name) = m.model_env.clone() {
            model_env.push((i, name));
        }
        models.push(Arc::new(ModelEntry {
            id,
            provider: m.provider,
            model: m.model,
            locality: m.locality,
            tasks: m.tasks,
            context_window: m.context_window,
            price,
            quality: Quality {
                default: m.quality,
                by_task,
            },
            latency: LatencyPrior {
                ttft_ms: m.ttft_ms,
                tokens_per_s: m.tokens_per_s,
            },
            target: m.target,
            auto_route: m.auto_route,
        }));
    }

    // [[rule]]
    if file.rule.is_empty() {
        return Err(c.error(&root.key("rule"), "the policy has no rule"));
    }
    let mut names = HashSet::new();
    let mut rule_candidates = Vec::with_capacity(file.rule.len());
    for (i, rule) in file.rule.iter().enumerate() {
        let rp = root.key("rule").index(i);
        if rule.name.trim().is_empty() {
            return Err(c.error(&rp.key("name"), "rule name is empty"));
        }
        if !names.insert(rule.name.clone()) {
            return Err(c.error(
                &rp.key("name"),
                format!("rule {:?} is defined twice", rule.name),
            ));
        }
        let wh = rp.key("when");
        let empty_list = |name: &str, empty: bool| {
            if empty {
                Err(c.error(
                    &wh.key(name),
                    "an empty list never matches; omit it instead",
                ))
            } else {
                Ok(())
            }
        };
        empty_list("task", rule.when.task.as_ref().is_some_and(Vec::is_empty))?;
        empty_list(
            "difficulty",
            rule.when.difficulty.as_ref().is_some_and(Vec::is_empty),
        )?;
        empty_list(
            "tenant",
            rule.when.tenant.as_ref().is_some_and(Vec::is_empty),
        )?;
        if rule.when.confidence_below.is_some_and(|cb| !unit(cb)) {
            return Err(c.error(&wh.key("confidence_below"), "must be between 0 and 1"));
        }
        if let Some(w) = &rule.weights {
            check_weights(c, &rp.key("weights"), w)?;
        }
        if rule.quality_floor.is_some_and(|q| !unit(q)) {
            return Err(c.error(&rp.key("quality_floor"), "must be between 0 and 1"));
        }
        let candidates = match &rule.models {
            None => {
                if rule.rank == Rank::Listed {
                    return Err(c.error(&rp.key("rank"), "rank = \"listed\" needs a `models` list"));
                }
                (0..models.len())
                    .filter(|&i| models[i].auto_route)
                    .collect()
            }
            Some(list) => {
                if list.is_empty() {
                    return Err(c.error(&rp.key("models"), "the list is empty"));
                }
                let mut seen = HashSet::new();
                let mut indexes = Vec::with_capacity(list.len());
                for (j, id) in list.iter().enumerate() {
                    let Some(&m) = by_id.get(id) else {
                        return Err(c.error(
                            &rp.key("models").index(j),
                            format!("model {id:?} is not in the catalogue"),
                        ));
                    };
                    if !seen.insert(m) {
                        return Err(c.error(
                            &rp.key("models").index(j),
                            format!("model {id:?} is listed twice"),
                        ));
                    }
                    indexes.push(m);
                }
                indexes
            }
        };
        if let Some(esc) = &rule.escalate {
            let ep = rp.key("escalate");
            if esc.to.is_empty() {
                return Err(c.error(&ep.key("to"), "name at least one model to escalate to"));
            }
            for (j, id) in esc.to.iter().enumerate() {
                if !by_id.contains_key(id) {
                    return Err(c.error(
                        &ep.key("to").index(j),
                        format!("model {id:?} is not in the catalogue"),
                    ));
                }
            }
            if !escalation.contains_key(&esc.check) {
                return Err(c.error(
                    &ep.key("check"),
                    format!("no [escalation.{}] check is defined", esc.check),
                ));
            }
        }
        rule_candidates.push(candidates);
    }

    // [budgets]
    let bp = root.key("budgets");
    let b = &file.budgets;
    if !(b.near_at.is_finite() && b.near_at > 0.0 && b.near_at <= 1.0) {
        return Err(c.error(&bp.key("near_at"), "must be in (0, 1]"));
    }
    if !matches!(b.reject_status, 402 | 429) {
        return Err(c.error(
            &bp.key("reject_status"),
            format!("must be 402 or 429, not {}", b.reject_status),
        ));
    }
    let dp = bp.key("downgrade");
    check_weights(c, &dp.key("weights"), &b.downgrade.weights)?;
    if b.downgrade
        .max_cost_usd
        .is_some_and(|cap| !non_negative(cap))
    {
        return Err(c.error(&dp.key("max_cost_usd"), "must be a finite number >= 0"));
    }
    if !unit(b.downgrade.quality_floor) {
        return Err(c.error(&dp.key("quality_floor"), "must be between 0 and 1"));
    }
    let mut tenants = HashSet::new();
    for (i, limit) in b.limit.iter().enumerate() {
        let lp = bp.key("limit").index(i);
        if limit.tenant.trim().is_empty() {
            return Err(c.error(&lp.key("tenant"), "tenant is empty"));
        }
        if !tenants.insert(limit.tenant.clone()) {
            return Err(c.error(
                &lp.key("tenant"),
                format!("tenant {:?} has two limits", limit.tenant),
            ));
        }
        if limit.daily_usd.is_none() && limit.monthly_usd.is_none() {
            return Err(c.error(&lp, "give daily_usd, monthly_usd or both"));
        }
        for (name, v) in [
            ("daily_usd", limit.daily_usd),
            ("monthly_usd", limit.monthly_usd),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(c.error(&lp.key(name), "must be a finite number > 0"));
            }
        }
    }

    Ok(Compiled {
        origin: origin.to_owned(),
        models,
        by_id,
        model_env,
        rules: file.rule,
        rule_candidates,
        weights: file.weights,
        selection: file.selection,
        live: file.live,
        budgets: file.budgets,
        escalation,
    })
}

/// The name in an "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}
