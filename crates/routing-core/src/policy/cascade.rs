//! Answer-aware escalation (a cascade): the cheap model answers first and
//! the router judges that answer before returning it.
//!
//! - Signals, each in `[0, 1]`: `logprobs`, the geometric mean of the
//!   generated tokens' probabilities (`exp` of the mean log-probability,
//!   where the provider returns them), and `agreement`, how alike the
//!   normalised answers of two or more cheap samples are
//!   ([`agreement`]), and `judge`, the probability an in-cluster judge
//!   model gives the answer of being right ([`judge_messages`],
//!   [`parse_verdict`]). They are combined into one confidence
//!   ([`combine`]: their mean, or the lowest).
//! - The threshold is calibrated like the difficulty tiers: the policy
//!   states the share of judged answers it wants escalated
//!   (`target_escalation_share`), and the threshold is that quantile of a
//!   rolling window of recent confidences ([`CascadeCalibrator`], over the
//!   same [`ScoreWindows`] store interface). Until the window holds
//!   `min_scores` confidences, `cold_start_threshold` applies.
//! - The checks of `[escalation.*]` (empty, truncated, refusal…) still run
//!   first; the cascade only judges answers that pass them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::calibration::{MemoryWindows, ScopeKey, ScoreWindows, StoreError, WindowLimits};
use crate::api::CascadeSignals;

/// One signal of the answer's confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CascadeSignal {
    /// Token log-probabilities (providers that return them).
    Logprobs,
    /// Agreement between cheap samples (one extra call per sample).
    Agreement,
    /// An in-cluster judge model's verdict (one call to `judge_model`).
    Judge,
}

/// How the signals become one confidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The mean of the available signals.
    #[default]
    Mean,
    /// The lowest available signal: any one doubt escalates.
    Min,
}

/// A rule's own cascade settings (`[[cascade.rule]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeRule {
    /// The `[[rule]]` name.
    pub rule: String,
    /// Turns the cascade on or off for this rule; absent: `[cascade].enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The rule's own target, with a window of its own (it reads the global
    /// window until its own holds `min_scores`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_escalation_share: Option<f64>,
}

/// The policy file's `[cascade]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CascadeConfig {
    /// Judge cheap answers of rules that escalate (`escalate = {...}`).
    pub enabled: bool,
    /// The signals read.
    pub signals: Vec<CascadeSignal>,
    /// How they are combined.
    pub combine: Combine,
    /// Cheap samples compared for `agreement` (the answer included: 2 is
    /// one extra call).
    pub samples: u32,
    /// Temperature of the extra samples (each with its own seed).
    pub sample_temperature: f32,
    /// The catalogue model that judges, for the `judge` signal; it must be
    /// in-cluster, so that judging never sends a prompt out.
    pub judge_model: Option<String>,
    /// The share of judged answers to escalate.
    pub target_escalation_share: f64,
    /// Move the threshold with the window; `false`: always
    /// `cold_start_threshold`.
    pub calibrate: bool,
    /// Confidences kept per window.
    pub window: usize,
    /// Confidences a window needs before its quantile is used.
    pub min_scores: usize,
    /// Confidences buffered between two merges into the window.
    pub recompute_every: usize,
    /// The threshold until a window holds `min_scores` (and when not
    /// calibrating).
    pub cold_start_threshold: f64,
    /// Per-rule settings.
    pub rule: Vec<CascadeRule>,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            signals: vec![CascadeSignal::Logprobs, CascadeSignal::Agreement],
            combine: Combine::Mean,
            samples: 2,
            sample_temperature: 0.8,
            judge_model: None,
            target_escalation_share: 0.2,
            calibrate: true,
            window: 1000,
            min_scores: 100,
            recompute_every: 16,
            cold_start_threshold: 0.5,
            rule: Vec::new(),
        }
    }
}

/// Where the cascade of one decision reads and writes its confidences.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeScope {
    /// The window: global, or the rule's own.
    pub key: ScopeKey,
    /// The share of answers to escalate.
    pub target: f64,
}

/// A `[cascade]` setting that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeInvalid {
    /// The `[[cascade.rule]]` entry at fault, if any.
    pub rule_index: Option<usize>,
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl CascadeConfig {
    /// The cascade for a decision taken by rule `rule`, or `None` when it
    /// is off for that rule.
    pub fn scope(&self, rule: &str) -> Option<CascadeScope> {
        let own = self.rule.iter().find(|r| r.rule == rule);
        if !own.and_then(|r| r.enabled).unwrap_or(self.enabled) {
            return None;
        }
        Some(match own.and_then(|r| r.target_escalation_share) {
            Some(target) => CascadeScope {
                key: ScopeKey::Rule(rule.to_owned()),
                target,
            },
            None => CascadeScope {
                key: ScopeKey::Global,
                target: self.target_escalation_share,
            },
        })
    }

    /// Whether `signal` is read.
    pub fn reads(&self, signal: CascadeSignal) -> bool {
        self.signals.contains(&signal)
    }

    /// Checks the settings against the policy's rule names; `judge` says
    /// what is wrong with a judge model (unknown, not in-cluster…), if
    /// anything.
    pub fn validate(
        &self,
        rules: &[&str],
        judge: impl Fn(&str) -> Option<String>,
    ) -> Result<(), CascadeInvalid> {
        let bad = |key, message: String| CascadeInvalid {
            rule_index: None,
            key,
            message,
        };
        let share_ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if self.signals.is_empty() {
            return Err(bad("signals", "name at least one signal".to_owned()));
        }
        for (i, s) in self.signals.iter().enumerate() {
            if self.signals[..i].contains(s) {
                return Err(bad("signals", format!("{s:?} is listed twice")));
            }
        }
        match (&self.judge_model, self.reads(CascadeSignal::Judge)) {
            (None, true) => {
                return Err(bad(
                    "judge_model",
                    "the judge signal needs a judge_model".to_owned(),
                ));
            }
            (Some(model), _) => {
                if let Some(problem) = judge(model) {
                    return Err(bad("judge_model", problem));
                }
            }
            (None, false) => {}
        }
        if !(2..=5).contains(&self.samples) {
            return Err(bad(
                "samples",
                format!("must be between 2 and 5, not {}", self.samples),
            ));
        }
        let t = self.sample_temperature;
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(bad(
                "sample_temperature",
                format!("must be between 0 and 2, not {t}"),
            ));
        }
        if !share_ok(self.target_escalation_share) {
            return Err(bad(
                "target_escalation_share",
                format!(
                    "must be between 0 and 1, not {}",
                    self.target_escalation_share
                ),
            ));
        }
        if self.window == 0 {
            return Err(bad("window", "must be at least 1".to_owned()));
        }
        if self.min_scores == 0 || self.min_scores > self.window {
            return Err(bad(
                "min_scores",
                format!("must be between 1 and the window ({})", self.window),
            ));
        }
        if self.recompute_every == 0 || self.recompute_every > self.window {
            return Err(bad(
                "recompute_every",
                format!("must be between 1 and the window ({})", self.window),
            ));
        }
        if !share_ok(self.cold_start_threshold) {
            return Err(bad(
                "cold_start_threshold",
                format!("must be between 0 and 1, not {}", self.cold_start_threshold),
            ));
        }
        for (i, r) in self.rule.iter().enumerate() {
            let at = |key, message: String| CascadeInvalid {
                rule_index: Some(i),
                key,
                message,
            };
            if !rules.contains(&r.rule.as_str()) {
                return Err(at("rule", format!("no [[rule]] is named {:?}", r.rule)));
            }
            if self.rule[..i].iter().any(|o| o.rule == r.rule) {
                return Err(at("rule", format!("rule {:?} is listed twice", r.rule)));
            }
            if let Some(share) = r.target_escalation_share.filter(|v| !share_ok(*v)) {
                return Err(at(
                    "target_escalation_share",
                    format!("must be between 0 and 1, not {share}"),
                ));
            }
        }
        Ok(())
    }

    fn limits(&self) -> WindowLimits {
        WindowLimits {
            capacity: self.window,
            max_tenant_windows: 1,
        }
    }
}

/// The words of an answer, normalised: lower case, letters and digits
/// only.
pub fn normalised_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How alike two answers are, in `[0, 1]`: 1 when their normalised words
/// are equal, else the Dice coefficient of their word bigrams (of their
/// words when either has fewer than two).
pub fn agreement(a: &str, b: &str) -> f64 {
    let (a, b) = (normalised_words(a), normalised_words(b));
    if a == b {
        return 1.0;
    }
    let grams = |w: &[String], n: usize| -> HashMap<Vec<String>, usize> {
        let mut counts = HashMap::new();
        for g in w.windows(n) {
            *counts.entry(g.to_vec()).or_insert(0) += 1;
        }
        counts
    };
    let n = if a.len() < 2 || b.len() < 2 { 1 } else { 2 };
    let (ga, gb) = (grams(&a, n), grams(&b, n));
    let total: usize = ga.values().sum::<usize>() + gb.values().sum::<usize>();
    if total == 0 {
        return 0.0;
    }
    let shared: usize = ga
        .iter()
        .map(|(g, c)| (*c).min(gb.get(g).copied().unwrap_or(0)))
        .sum();
    2.0 * shared as f64 / total as f64
}

/// The mean agreement of the first answer with each other sample.
pub fn sample_agreement(answer: &str, others: &[&str]) -> Option<f64> {
    if others.is_empty() {
        return None;
    }
    Some(others.iter().map(|o| agreement(answer, o)).sum::<f64>() / others.len() as f64)
}

/// What a judge model is asked about `answer` to `question`: a
/// probability, as a bare number.
pub fn judge_messages(question: &str, answer: &str) -> Vec<crate::chat::Message> {
    use crate::chat::{Message, Role};
    vec![
        Message {
            role: Role::System,
            content: "You grade answers. Reply with one number between 0 and 1, nothing else: \
                      the probability that the answer is correct and complete."
                .to_owned(),
        },
        Message::user(format!(
            "Question:\n{question}\n\nAnswer:\n{answer}\n\nProbability it is correct:"
        )),
    ]
}

/// The judge's verdict: the first number in its reply (a percentage when
/// followed by `%`), in `[0, 1]`; `None` when there is none.
pub fn parse_verdict(reply: &str) -> Option<f64> {
    let start = reply.find(|c: char| c.is_ascii_digit() || c == '.')?;
    let rest = &reply[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..end].trim_end_matches('.').parse().ok()?;
    let value = if rest[end..].starts_with('%') {
        value / 100.0
    } else {
        value
    };
    (value.is_finite() && (0.0..=1.0).contains(&value)).then_some(value)
}

/// The confidence the available signals add up to; `None` when none is.
pub fn combine(how: Combine, signals: &CascadeSignals) -> Option<f64> {
    let values: Vec<f64> = [signals.logprobs, signals.agreement, signals.judge]
        .into_iter()
        .flatten()
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(match how {
        Combine::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Combine::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

/// The threshold that escalates `share` of the `sorted` (ascending)
/// confidences: the `round(n·share)`-th lowest is the first kept. A share
/// of 0 is a threshold of 0 (nothing is below it), a share of 1 one of
/// `+Inf` (everything is). `None` for an empty window.
pub fn escalation_threshold(sorted: &[f64], share: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let below = (n as f64 * share.clamp(0.0, 1.0)).round();
    // `below` is in [0, n]: the conversion is exact.
    let below = below as usize;
    Some(match below {
        0 => 0.0,
        b if b >= n => f64::INFINITY,
        b => sorted.get(b).copied().unwrap_or(f64::INFINITY),
    })
}

/// The threshold a judgement is made against.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeThreshold {
    /// Escalate below this.
    pub value: f64,
    /// `window`, `cold_start` or `static`.
    pub source: &'static str,
    /// The window it was read from.
    pub window: ScopeKey,
    /// Confidences in that window.
    pub n: usize,
}

#[derive(Debug, Default)]
struct Window {
    sorted: Vec<f64>,
    pending: Vec<f64>,
    refreshing: bool,
}

/// Calibrates the cascade's threshold from windows of recent confidences.
pub struct CascadeCalibrator {
    store: Arc<dyn ScoreWindows>,
    windows: Mutex<HashMap<ScopeKey, Window>>,
}

impl std::fmt::Debug for CascadeCalibrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CascadeCalibrator").finish_non_exhaustive()
    }
}

impl Default for CascadeCalibrator {
    fn default() -> Self {
        Self::new(Arc::new(MemoryWindows::new()))
    }
}

impl CascadeCalibrator {
    /// A calibrator over `store` (a store of its own: its keys would mix
    /// with the difficulty tiers' in a shared one).
    pub fn new(store: Arc<dyn ScoreWindows>) -> Self {
        Self {
            store,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The threshold in force for `scope`.
    pub fn threshold(&self, config: &CascadeConfig, scope: &CascadeScope) -> CascadeThreshold {
        let cold = |n| CascadeThreshold {
            value: config.cold_start_threshold,
            source: if config.calibrate {
                "cold_start"
            } else {
                "static"
            },
            window: scope.key.clone(),
            n,
        };
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let own = windows.get(&scope.key).map_or(0, |w| w.sorted.len());
        if !config.calibrate {
            return cold(own);
        }
        let min = config.min_scores.max(1);
        [&scope.key, &ScopeKey::Global]
            .into_iter()
            .find_map(|k| {
                let w = windows.get(k).filter(|w| w.sorted.len() >= min)?;
                let value = escalation_threshold(&w.sorted, scope.target)?;
                Some(CascadeThreshold {
                    value,
                    source: "window",
                    window: k.clone(),
                    n: w.sorted.len(),
                })
            })
            .unwrap_or_else(|| cold(own))
    }

    /// Buffers a judged confidence; `true` when the window is due a
    /// [`refresh`](Self::refresh).
    pub fn record(&self, config: &CascadeConfig, scope: &CascadeScope, confidence: f64) -> bool {
        if !config.calibrate || !confidence.is_finite() {
            return false;
        }
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let w = windows.entry(scope.key.clone()).or_default();
        if w.pending.len() < config.window.max(1) {
            w.pending.push(confidence);
        }
        !w.refreshing && w.pending.len() >= config.recompute_every.max(1)
    }

    /// Merges the buffered confidences of `key` into the store and
    /// re-sorts its snapshot; on a store error they are dropped and the
    /// previous snapshot kept.
    pub async fn refresh(&self, key: &ScopeKey, config: &CascadeConfig) -> Result<(), StoreError> {
        let pending = {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(w) = windows.get_mut(key) else {
                return Ok(());
            };
            if w.refreshing || w.pending.is_empty() {
                return Ok(());
            }
            w.refreshing = true;
            std::mem::take(&mut w.pending)
        };
        let merged = self.store.merge(key, &pending, config.limits()).await;
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = windows.get_mut(key);
        match merged {
            Ok(mut window) => {
                window.retain(|v| v.is_finite());
                window.sort_unstable_by(f64::total_cmp);
                if let Some(w) = slot {
                    w.sorted = window;
                    w.refreshing = false;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(w) = slot {
                    w.refreshing = false;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_one_for_equal_answers_and_low_for_unrelated_ones() {
        assert_eq!(agreement("Paris.", "paris"), 1.0);
        assert_eq!(agreement("The answer is 42", "the answer is: 42!"), 1.0);
        let near = agreement(
            "The capital of France is Paris, a city on the Seine.",
            "The capital of France is Paris, on the river Seine.",
        );
        assert!((0.5..1.0).contains(&near), "{near}");
        let far = agreement(
            "The capital of France is Paris.",
            "Bananas grow in tropical climates worldwide.",
        );
        assert!(far < 0.1, "{far}");
        assert_eq!(agreement("Paris", "Lyon"), 0.0);
        assert_eq!(sample_agreement("a b", &[]), None);
        assert_eq!(sample_agreement("a b", &["a b", "c d"]), Some(0.5));
    }

    #[test]
    fn verdicts_are_read_from_the_judges_reply() {
        assert_eq!(parse_verdict("0.15"), Some(0.15));
        assert_eq!(parse_verdict(" Probability: 0.9."), Some(0.9));
        assert_eq!(parse_verdict("85%"), Some(0.85));
        assert_eq!(parse_verdict("1"), Some(1.0));
        assert_eq!(parse_verdict("7"), None);
        assert_eq!(parse_verdict("I cannot tell"), None);
        let asked = judge_messages("2+2?", "4");
        assert!(asked[1].content.contains("2+2?") && asked[1].content.contains('4'));
    }

    #[test]
    fn signals_combine_by_mean_or_min_and_none_without_any() {
        let both = CascadeSignals {
            logprobs: Some(0.9),
            agreement: Some(0.3),
            judge: None,
        };
        assert!((combine(Combine::Mean, &both).unwrap_or(0.0) - 0.6).abs() < 1e-12);
        assert_eq!(combine(Combine::Min, &both), Some(0.3));
        let one = CascadeSignals {
            agreement: Some(0.7),
            ..CascadeSignals::default()
        };
        assert_eq!(combine(Combine::Mean, &one), Some(0.7));
        assert_eq!(combine(Combine::Mean, &CascadeSignals::default()), None);
    }

    #[test]
    fn the_threshold_escalates_the_target_share() {
        let sorted: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let t = escalation_threshold(&sorted, 0.2).unwrap_or(f64::NAN);
        assert_eq!(sorted.iter().filter(|&&c| c < t).count(), 20);
        assert_eq!(escalation_threshold(&sorted, 0.0), Some(0.0));
        assert_eq!(escalation_threshold(&sorted, 1.0), Some(f64::INFINITY));
        assert_eq!(escalation_threshold(&[], 0.2), None);
    }

    #[test]
    fn scopes_follow_the_rule_overrides() {
        let mut config = CascadeConfig::default();
        assert_eq!(config.scope("simple_cheap"), None);
        config.enabled = true;
        assert_eq!(
            config.scope("simple_cheap"),
            Some(CascadeScope {
                key: ScopeKey::Global,
                target: 0.2
            })
        );
        config.rule = vec![
            CascadeRule {
                rule: "simple_cheap".to_owned(),
                enabled: None,
                target_escalation_share: Some(0.4),
            },
            CascadeRule {
                rule: "private_local".to_owned(),
                enabled: Some(false),
                target_escalation_share: None,
            },
        ];
        assert_eq!(
            config.scope("simple_cheap"),
            Some(CascadeScope {
                key: ScopeKey::Rule("simple_cheap".to_owned()),
                target: 0.4
            })
        );
        assert_eq!(config.scope("private_local"), None);
        assert!(
            config
                .validate(&["simple_cheap", "private_local"], |_| None)
                .is_ok()
        );
        let err = config.validate(&["simple_cheap"], |_| None).err();
        assert_eq!(err.map(|e| (e.rule_index, e.key)), Some((Some(1), "rule")));
        config.signals.push(CascadeSignal::Judge);
        assert_eq!(
            config
                .validate(&["simple_cheap", "private_local"], |_| None)
                .err()
                .map(|e| e.key),
            Some("judge_model")
        );
        config.judge_model = Some("groq/x".to_owned());
        assert_eq!(
            config
                .validate(&["simple_cheap", "private_local"], |_| Some(
                    "not in-cluster".to_owned()
                ))
                .err()
                .map(|e| e.message),
            Some("not in-cluster".to_owned())
        );
        config.samples = 1;
        assert_eq!(
            config
                .validate(&["simple_cheap", "private_local"], |_| None)
                .err()
                .map(|e| e.key),
            Some("samples")
        );
    }

    /// Drives a future that never waits (the in-memory store's).
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the in-memory store never waits"),
        }
    }

    #[test]
    fn the_window_moves_the_threshold_to_the_target_share() {
        let config = CascadeConfig {
            enabled: true,
            window: 200,
            min_scores: 100,
            recompute_every: 10,
            ..CascadeConfig::default()
        };
        let scope = config.scope("any").unwrap_or(CascadeScope {
            key: ScopeKey::Global,
            target: 0.2,
        });
        let calibrator = CascadeCalibrator::default();
        let cold = calibrator.threshold(&config, &scope);
        assert_eq!((cold.value, cold.source), (0.5, "cold_start"));
        // Confidences well above the cold-start threshold: a fixed
        // threshold would escalate none of them.
        for i in 0..150 {
            let confidence = 0.8 + f64::from(i % 50) / 250.0;
            if calibrator.record(&config, &scope, confidence) {
                now(calibrator.refresh(&scope.key, &config)).ok();
            }
        }
        let t = calibrator.threshold(&config, &scope);
        assert_eq!((t.source, t.n), ("window", 150));
        let escalated = (0..50)
            .map(|i| 0.8 + f64::from(i) / 250.0)
            .filter(|c| *c < t.value)
            .count();
        assert_eq!(escalated, 10, "20% of a period of 50");
    }
}
