//! Parsing and validating a policy file into the policy selection uses,
//! with errors that name the line and field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::calibration::{CalibrationConfig, TargetShare};
use super::catalogue::{
    LatencyPrior, ModelEntry, ModelPrice, PriceOrigin, Quality, ServingFunction, Tiers,
};
use super::escalation::EscalationCheck;
use super::learning::LearningConfig;
use super::live::LiveConfig;
use super::schema::{
    BudgetPolicy, DifficultyWeights, Escalate, ModelFile, POLICY_VERSION, PolicyFile, Rank, Rule,
    SelectionConfig, Weights, When,
};
use crate::chat::Locality;
use crate::pricing::Catalogue;
use crate::task::Task;

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
    pub calibration: CalibrationConfig,
    pub learning: LearningConfig,
    pub cascade: super::cascade::CascadeConfig,
}

impl Compiled {
    /// A model by catalogue id, or by a provider model name that exactly
    /// one catalogue entry serves.
    pub(super) fn find_model(&self, name: &str) -> Option<&Arc<ModelEntry>> {
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
    let file = parse(c, text)?;
    let root = FieldPath::default();
    check_version(c, &root.key("version"), file.version)?;
    check_selection(c, &root.key("selection"), &file.selection)?;
    check_weight_table(c, &root.key("weights"), &file.weights)?;
    check_live(c, &root.key("live"), &file.live)?;
    let escalation = compile_escalation(c, &root.key("escalation"), &file.escalation)?;
    let catalogue = compile_models(c, &root.key("model"), file.model, prices)?;
    let rule_candidates = compile_rules(c, &root.key("rule"), &file.rule, &catalogue, &escalation)?;
    check_budgets(c, &root.key("budgets"), &file.budgets)?;
    check_calibration(c, &root.key("calibration"), &file.calibration)?;
    check_learning(c, &root.key("learning"), &file.learning)?;
    check_cascade(
        c,
        &root.key("cascade"),
        &file.cascade,
        &file.rule,
        &catalogue,
    )?;
    Ok(Compiled {
        origin: origin.to_owned(),
        models: catalogue.models,
        by_id: catalogue.by_id,
        model_env: catalogue.model_env,
        rules: file.rule,
        rule_candidates,
        weights: file.weights,
        selection: file.selection,
        live: file.live,
        budgets: file.budgets,
        escalation,
        calibration: file.calibration,
        learning: file.learning,
        cascade: file.cascade,
    })
}

/// The document deserialised, unknown keys and type errors located.
fn parse(c: &Checker<'_>, text: &str) -> Result<PolicyFile, PolicyError> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| c.error_at(None, e.span(), e.message().to_owned()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
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
    })
}

/// `version`.
fn check_version(c: &Checker<'_>, path: &FieldPath, version: u32) -> Result<(), PolicyError> {
    if version != POLICY_VERSION {
        return Err(c.error(
            path,
            format!(
                "version {version} is not supported; this build reads version {POLICY_VERSION}"
            ),
        ));
    }
    Ok(())
}

/// `[selection]`.
fn check_selection(
    c: &Checker<'_>,
    sp: &FieldPath,
    sel: &SelectionConfig,
) -> Result<(), PolicyError> {
    if !(sel.cost_unit_usd.is_finite() && sel.cost_unit_usd > 0.0) {
        return Err(c.error(&sp.key("cost_unit_usd"), "must be a finite number > 0"));
    }
    if !(sel.latency_unit_ms.is_finite() && sel.latency_unit_ms > 0.0) {
        return Err(c.error(&sp.key("latency_unit_ms"), "must be a finite number > 0"));
    }
    if !unit(sel.quality_floor) {
        return Err(c.error(&sp.key("quality_floor"), "must be between 0 and 1"));
    }
    Ok(())
}

/// `[weights]`.
fn check_weight_table(
    c: &Checker<'_>,
    wp: &FieldPath,
    weights: &DifficultyWeights,
) -> Result<(), PolicyError> {
    for (name, w) in [
        ("default", &weights.default),
        ("simple", &weights.simple),
        ("medium", &weights.medium),
        ("hard", &weights.hard),
    ] {
        check_weights(c, &wp.key(name), w)?;
    }
    Ok(())
}

/// `[live]`.
fn check_live(c: &Checker<'_>, lp: &FieldPath, live: &LiveConfig) -> Result<(), PolicyError> {
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
    if live.breaker_window == 0 {
        return Err(c.error(&lp.key("breaker_window"), "must be at least 1"));
    }
    if !(live.breaker_failure_rate.is_finite()
        && live.breaker_failure_rate > 0.0
        && live.breaker_failure_rate <= 1.0)
    {
        return Err(c.error(&lp.key("breaker_failure_rate"), "must be in (0, 1]"));
    }
    if live.breaker_min_calls > live.breaker_window {
        return Err(c.error(
            &lp.key("breaker_min_calls"),
            format!(
                "{} calls can never be reached with a breaker window of {}",
                live.breaker_min_calls, live.breaker_window
            ),
        ));
    }
    if live.breaker_probes == 0 {
        return Err(c.error(&lp.key("breaker_probes"), "must be at least 1"));
    }
    Ok(())
}

/// `[escalation.*]`, with the built-in `default` check.
fn compile_escalation(
    c: &Checker<'_>,
    path: &FieldPath,
    checks: &BTreeMap<String, EscalationCheck>,
) -> Result<BTreeMap<String, EscalationCheck>, PolicyError> {
    let mut escalation = BTreeMap::new();
    escalation.insert("default".to_owned(), EscalationCheck::default());
    for (name, check) in checks {
        let ep = path.key(name);
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
    Ok(escalation)
}

/// The compiled `[[model]]` catalogue.
struct Models {
    models: Vec<Arc<ModelEntry>>,
    by_id: HashMap<String, usize>,
    model_env: Vec<(usize, String)>,
}

/// `[[model]]`: every entry checked, priced and indexed by id.
fn compile_models(
    c: &Checker<'_>,
    path: &FieldPath,
    files: Vec<ModelFile>,
    prices: &Catalogue,
) -> Result<Models, PolicyError> {
    if files.is_empty() {
        return Err(c.error(path, "the catalogue lists no model"));
    }
    let mut catalogue = Models {
        models: Vec::with_capacity(files.len()),
        by_id: HashMap::new(),
        model_env: Vec::new(),
    };
    for (i, m) in files.into_iter().enumerate() {
        let mp = path.index(i);
        let id = model_id(c, &mp, &m)?;
        if catalogue.by_id.insert(id.clone(), i).is_some() {
            return Err(c.error(
                &mp.key(if m.id.is_some() { "id" } else { "model" }),
                format!("model id {id:?} is listed twice"),
            ));
        }
        if let Some(name) = m.model_env.clone() {
            catalogue.model_env.push((i, name));
        }
        catalogue
            .models
            .push(Arc::new(compile_model(c, &mp, id, m, prices)?));
    }
    Ok(catalogue)
}

/// A model's catalogue id: `id`, else `provider/model`.
fn model_id(c: &Checker<'_>, mp: &FieldPath, m: &ModelFile) -> Result<String, PolicyError> {
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
    Ok(id)
}

/// One `[[model]]` entry, its id already checked.
fn compile_model(
    c: &Checker<'_>,
    mp: &FieldPath,
    id: String,
    m: ModelFile,
    prices: &Catalogue,
) -> Result<ModelEntry, PolicyError> {
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
    let by_task = task_quality(c, mp, &m)?;
    if m.target == ServingFunction::Embed {
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
    let price = model_price(c, mp, &m, prices)?;
    Ok(ModelEntry {
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
    })
}

/// A model's `task_quality`: only for tasks it serves.
fn task_quality(
    c: &Checker<'_>,
    mp: &FieldPath,
    m: &ModelFile,
) -> Result<Vec<(Task, Tiers)>, PolicyError> {
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
    Ok(by_task)
}

/// A model's price: the price catalogue's, or its own `price` when the
/// catalogue lacks it; both given, they must agree.
fn model_price(
    c: &Checker<'_>,
    mp: &FieldPath,
    m: &ModelFile,
    prices: &Catalogue,
) -> Result<ModelPrice, PolicyError> {
    let listed = prices.price(&m.provider, &m.model);
    match (&m.price, listed) {
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
            Ok(ModelPrice {
                input: own.input,
                output: own.output,
                as_of: own.as_of.clone(),
                source: own.source.clone(),
                origin: if listed.is_some() {
                    PriceOrigin::Catalogue
                } else {
                    PriceOrigin::Policy
                },
            })
        }
        (None, Some(listed)) => Ok(ModelPrice {
            input: listed.input,
            output: listed.output,
            as_of: listed.as_of.clone(),
            source: listed.source.clone(),
            origin: PriceOrigin::Catalogue,
        }),
        (None, None) => Err(c.error(
            &mp.key("model"),
            format!(
                "{}/{} has no price in the price catalogue; add it there or give `price` here",
                m.provider, m.model
            ),
        )),
    }
}

/// `[[rule]]`: each rule checked; its candidates as catalogue indexes.
fn compile_rules(
    c: &Checker<'_>,
    path: &FieldPath,
    rules: &[Rule],
    catalogue: &Models,
    escalation: &BTreeMap<String, EscalationCheck>,
) -> Result<Vec<Vec<usize>>, PolicyError> {
    if rules.is_empty() {
        return Err(c.error(path, "the policy has no rule"));
    }
    let mut names = HashSet::new();
    let mut rule_candidates = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.index(i);
        if rule.name.trim().is_empty() {
            return Err(c.error(&rp.key("name"), "rule name is empty"));
        }
        if !names.insert(rule.name.clone()) {
            return Err(c.error(
                &rp.key("name"),
                format!("rule {:?} is defined twice", rule.name),
            ));
        }
        check_when(c, &rp.key("when"), &rule.when)?;
        if let Some(w) = &rule.weights {
            check_weights(c, &rp.key("weights"), w)?;
        }
        if rule.quality_floor.is_some_and(|q| !unit(q)) {
            return Err(c.error(&rp.key("quality_floor"), "must be between 0 and 1"));
        }
        let candidates = rule_models(c, &rp, rule, catalogue)?;
        if let Some(esc) = &rule.escalate {
            check_escalate(c, &rp.key("escalate"), esc, catalogue, escalation)?;
        }
        if let Some(target) = &rule.target_share {
            let tp = rp.key("target_share");
            if rule.when.difficulty.is_some() {
                return Err(c.error(
                    &tp,
                    "a rule that matches on difficulty cannot set the target share that decides \
                     difficulty; move target_share to a rule without when.difficulty",
                ));
            }
            check_target_share(c, &tp, target)?;
        }
        rule_candidates.push(candidates);
    }
    Ok(rule_candidates)
}

/// A rule's `when`.
fn check_when(c: &Checker<'_>, wh: &FieldPath, when: &When) -> Result<(), PolicyError> {
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
    empty_list("task", when.task.as_ref().is_some_and(Vec::is_empty))?;
    empty_list(
        "difficulty",
        when.difficulty.as_ref().is_some_and(Vec::is_empty),
    )?;
    empty_list("tenant", when.tenant.as_ref().is_some_and(Vec::is_empty))?;
    if when.confidence_below.is_some_and(|cb| !unit(cb)) {
        return Err(c.error(&wh.key("confidence_below"), "must be between 0 and 1"));
    }
    Ok(())
}

/// A rule's candidates: its `models` list, else every auto-routed model.
fn rule_models(
    c: &Checker<'_>,
    rp: &FieldPath,
    rule: &Rule,
    catalogue: &Models,
) -> Result<Vec<usize>, PolicyError> {
    let Some(list) = &rule.models else {
        if rule.rank == Rank::Listed {
            return Err(c.error(&rp.key("rank"), "rank = \"listed\" needs a `models` list"));
        }
        return Ok((0..catalogue.models.len())
            .filter(|&i| catalogue.models[i].auto_route)
            .collect());
    };
    if list.is_empty() {
        return Err(c.error(&rp.key("models"), "the list is empty"));
    }
    let mut seen = HashSet::new();
    let mut indexes = Vec::with_capacity(list.len());
    for (j, id) in list.iter().enumerate() {
        let Some(&m) = catalogue.by_id.get(id) else {
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
    Ok(indexes)
}

/// A rule's `escalate`: known targets and a defined check.
fn check_escalate(
    c: &Checker<'_>,
    ep: &FieldPath,
    esc: &Escalate,
    catalogue: &Models,
    escalation: &BTreeMap<String, EscalationCheck>,
) -> Result<(), PolicyError> {
    if esc.to.is_empty() {
        return Err(c.error(&ep.key("to"), "name at least one model to escalate to"));
    }
    for (j, id) in esc.to.iter().enumerate() {
        if !catalogue.by_id.contains_key(id) {
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
    Ok(())
}

/// `[budgets]`.
fn check_budgets(c: &Checker<'_>, bp: &FieldPath, b: &BudgetPolicy) -> Result<(), PolicyError> {
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
    Ok(())
}

/// A target share: each in `[0, 1]`, together at most 1.
fn check_target_share(
    c: &Checker<'_>,
    path: &FieldPath,
    target: &TargetShare,
) -> Result<(), PolicyError> {
    for (name, v) in [("medium", target.medium), ("hard", target.hard)] {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return Err(c.error(
                &path.key(name),
                format!("a share must be between 0 and 1, not {v}"),
            ));
        }
    }
    let sum = target.medium + target.hard;
    if sum > 1.0 + 1e-9 {
        return Err(c.error(
            path,
            format!(
                "medium + hard = {sum} leaves simple a negative share; together they must be \
                 at most 1"
            ),
        ));
    }
    Ok(())
}

/// `[calibration]`.
fn check_calibration(
    c: &Checker<'_>,
    cp: &FieldPath,
    cal: &CalibrationConfig,
) -> Result<(), PolicyError> {
    check_target_share(c, &cp.key("target_share"), &cal.target_share)?;
    if cal.window == 0 {
        return Err(c.error(&cp.key("window"), "must be at least 1"));
    }
    if cal.min_scores == 0 {
        return Err(c.error(&cp.key("min_scores"), "must be at least 1"));
    }
    if cal.min_scores > cal.window {
        return Err(c.error(
            &cp.key("min_scores"),
            format!(
                "{} scores can never be reached with a window of {}",
                cal.min_scores, cal.window
            ),
        ));
    }
    if cal.recompute_every == 0 || cal.recompute_every > cal.window {
        return Err(c.error(
            &cp.key("recompute_every"),
            format!("must be between 1 and the window ({})", cal.window),
        ));
    }
    if !(cal.score_resolution.is_finite() && (0.0..=0.1).contains(&cal.score_resolution)) {
        return Err(c.error(
            &cp.key("score_resolution"),
            format!("must be between 0 and 0.1, not {}", cal.score_resolution),
        ));
    }
    if let Some(cold) = &cal.cold_start {
        let sp = cp.key("cold_start");
        for (name, v) in [("medium", cold.medium), ("hard", cold.hard)] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(c.error(
                    &sp.key(name),
                    format!("a cut-off must be between 0 and 1, not {v}"),
                ));
            }
        }
        if cold.hard < cold.medium {
            return Err(c.error(
                &sp.key("hard"),
                format!(
                    "the hard cut-off {} is below the medium one {}",
                    cold.hard, cold.medium
                ),
            ));
        }
    }
    if cal.max_tenant_windows == 0 {
        return Err(c.error(&cp.key("max_tenant_windows"), "must be at least 1"));
    }
    let mut tenants = HashSet::new();
    for (i, t) in cal.tenant.iter().enumerate() {
        let tp = cp.key("tenant").index(i);
        if t.tenant.trim().is_empty() {
            return Err(c.error(&tp.key("tenant"), "tenant is empty"));
        }
        if t.tenant == "*" {
            return Err(c.error(
                &tp.key("tenant"),
                "name a tenant: `*` would give every tenant name a window; \
                 [calibration].target_share already covers the rest",
            ));
        }
        if !tenants.insert(t.tenant.as_str()) {
            return Err(c.error(
                &tp.key("tenant"),
                format!("tenant {:?} has two targets", t.tenant),
            ));
        }
        check_target_share(c, &tp.key("target_share"), &t.target_share)?;
    }
    Ok(())
}

/// `[cascade]`.
fn check_cascade(
    c: &Checker<'_>,
    cp: &FieldPath,
    cascade: &super::cascade::CascadeConfig,
    rules: &[Rule],
    catalogue: &Models,
) -> Result<(), PolicyError> {
    let rules: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    // The judge reads every judged prompt: it must never be outside.
    let judge = |id: &str| -> Option<String> {
        let Some(m) = catalogue
            .by_id
            .get(id)
            .and_then(|&i| catalogue.models.get(i))
        else {
            return Some(format!("no [[model]] has the id {id:?}"));
        };
        if m.locality != crate::chat::Locality::InCluster {
            return Some(format!(
                "{id} is {}: the judge must run in the cluster",
                serde_json::to_value(m.locality)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ));
        }
        if m.target != ServingFunction::ProviderProxy
            || !m
                .tasks
                .iter()
                .any(|t| matches!(t, Task::Classify | Task::Generate))
        {
            return Some(format!("{id} does not generate text"));
        }
        None
    };
    cascade.validate(&rules, judge).map_err(|e| {
        let at = match e.rule_index {
            Some(i) => cp.key("rule").index(i),
            None => cp.clone(),
        };
        c.error(&at.key(e.key), e.message)
    })
}

/// `[learning]`.
fn check_learning(
    c: &Checker<'_>,
    lp: &FieldPath,
    learning: &LearningConfig,
) -> Result<(), PolicyError> {
    let share = learning.explore_share;
    if !(share.is_finite() && (0.0..=0.5).contains(&share)) {
        return Err(c.error(
            &lp.key("explore_share"),
            format!("must be between 0 and 0.5, not {share}"),
        ));
    }
    if !non_negative(learning.explore_max_cost_usd) {
        return Err(c.error(
            &lp.key("explore_max_cost_usd"),
            format!(
                "must be a finite number >= 0, not {}",
                learning.explore_max_cost_usd
            ),
        ));
    }
    if !(learning.prior_weight.is_finite() && learning.prior_weight > 0.0) {
        return Err(c.error(
            &lp.key("prior_weight"),
            format!(
                "must be a finite number above 0, not {}",
                learning.prior_weight
            ),
        ));
    }
    let mut tenants = HashSet::new();
    for (i, t) in learning.frozen_tenants.iter().enumerate() {
        let tp = lp.key("frozen_tenants").index(i);
        if t.trim().is_empty() {
            return Err(c.error(&tp, "tenant is empty"));
        }
        if !tenants.insert(t.as_str()) {
            return Err(c.error(&tp, format!("tenant {t:?} is listed twice")));
        }
    }
    Ok(())
}

/// The name in an "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}
