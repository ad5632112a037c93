//! The calibrated operating point: difficulty tiers cut from the classifier's
//! needs-strong score at the quantiles of a rolling window of recent scores,
//! so that each tier receives the share of traffic the policy asks for,
//! whatever the traffic's score distribution.
//!
//! - The policy's `[calibration]` table states a target share per tier
//!   ([`TargetShare`]); a rule (`target_share` on a `[[rule]]` without a
//!   difficulty condition) or a tenant (`[[calibration.tenant]]`) may state
//!   its own, and then gets its own window ([`ScopeKey`]).
//! - Windows live behind [`ScoreWindows`]: batched, asynchronous merge and
//!   get, so that a store shared by every replica can stand in for
//!   [`MemoryWindows`].
//! - [`Calibrator`] decides each request's tier from a sorted snapshot of its
//!   window (no store round trip on the request path) and buffers the score;
//!   every `recompute_every` scores the router calls
//!   [`Calibrator::refresh`], which merges the buffer into the store and
//!   re-sorts the snapshot.
//! - Until a window holds `min_scores` scores (a cold start), a scoped
//!   window borrows the global window's quantiles; with the global window
//!   cold too, the static cut-offs apply (`cold_start`, by default the
//!   classifier model's own MMLU-fitted thresholds).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::api::{CalibrationExplanation, TierThresholds};
use crate::task::Difficulty;

/// Share of traffic the policy wants in the medium and hard tiers; simple
/// gets the rest. Each in `[0, 1]`, together at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetShare {
    /// Share of scored prompts rated medium.
    pub medium: f64,
    /// Share of scored prompts rated hard.
    pub hard: f64,
}

impl TargetShare {
    /// The share left to the simple tier.
    pub fn simple(&self) -> f64 {
        (1.0 - self.medium - self.hard).max(0.0)
    }
}

impl Default for TargetShare {
    fn default() -> Self {
        Self {
            medium: 0.25,
            hard: 0.10,
        }
    }
}

/// Needs-strong cut-offs: a score at or above `hard` is hard, else at or
/// above `medium` is medium, else simple. An infinite cut-off is never
/// reached (a target share of 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutoffs {
    /// From this score on a prompt is at least medium.
    pub medium: f64,
    /// From this score on a prompt is hard.
    pub hard: f64,
}

impl Cutoffs {
    /// The cut-offs the shipped classifier model was fitted with on MMLU
    /// (its `difficulty_thresholds`), used when its model file cannot be
    /// read.
    pub const MMLU_FITTED: Cutoffs = Cutoffs {
        medium: 0.0888,
        hard: 0.2664,
    };

    /// The tier of `score`.
    pub fn tier(&self, score: f64) -> Difficulty {
        if score >= self.hard {
            Difficulty::Hard
        } else if score >= self.medium {
            Difficulty::Medium
        } else {
            Difficulty::Simple
        }
    }

    /// The classifier model's own thresholds, else [`Cutoffs::MMLU_FITTED`].
    pub fn classifier() -> Cutoffs {
        crate::classifier::default_model().map_or(Self::MMLU_FITTED, |m| {
            let t = m.thresholds();
            Cutoffs {
                medium: round6(f64::from(t.medium_from)),
                hard: round6(f64::from(t.hard_from)),
            }
        })
    }

    fn wire(&self) -> TierThresholds {
        let finite = |v: f64| Some(v).filter(|v| v.is_finite());
        TierThresholds {
            medium: finite(self.medium),
            hard: finite(self.hard),
        }
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// A tenant's own target (`[[calibration.tenant]]`); the tenant then gets a
/// window of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTarget {
    /// The tenant (an exact name; `*` is refused).
    pub tenant: String,
    /// Its target share per tier.
    pub target_share: TargetShare,
}

/// The policy file's `[calibration]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Cut tiers at the window's quantiles; `false`: always the static
    /// cut-offs.
    pub enabled: bool,
    /// Target share per tier for traffic no rule or tenant target covers.
    pub target_share: TargetShare,
    /// Scores kept per window (the most recent).
    pub window: usize,
    /// Scores a window needs before its quantiles are used.
    pub min_scores: usize,
    /// Scores buffered between two merges into the window (and re-sorts of
    /// its snapshot).
    pub recompute_every: usize,
    /// The precision the score arrives with (the classifier rounds to three
    /// decimals): each score is spread over its rounding interval by a hash
    /// of the prompt, so ties cannot hold a quantile. 0: scores are exact.
    pub score_resolution: f64,
    /// Static cut-offs for a cold start (and when disabled); absent: the
    /// classifier model's own `difficulty_thresholds`.
    pub cold_start: Option<Cutoffs>,
    /// Most tenant windows kept; the least recently used goes first.
    pub max_tenant_windows: usize,
    /// Tenants with targets of their own.
    pub tenant: Vec<TenantTarget>,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            target_share: TargetShare::default(),
            window: 2000,
            min_scores: 200,
            recompute_every: 32,
            score_resolution: 0.001,
            cold_start: None,
            max_tenant_windows: 64,
            tenant: Vec::new(),
        }
    }
}

impl CalibrationConfig {
    /// The static cut-offs in force for a cold start.
    pub fn cold_start_cutoffs(&self) -> Cutoffs {
        self.cold_start.unwrap_or_else(Cutoffs::classifier)
    }

    /// The store limits these settings imply.
    pub fn limits(&self) -> WindowLimits {
        WindowLimits {
            capacity: self.window,
            max_tenant_windows: self.max_tenant_windows,
        }
    }
}

/// Which window a request's score goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    /// Traffic no rule or tenant target covers.
    Global,
    /// Requests matched by a rule with its own `target_share`.
    Rule(String),
    /// A tenant with its own target.
    Tenant(String),
}

impl ScopeKey {
    /// Whether this is a tenant's window (those are capped in number).
    pub fn is_tenant(&self) -> bool {
        matches!(self, ScopeKey::Tenant(_))
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeKey::Global => f.write_str("global"),
            ScopeKey::Rule(name) => write!(f, "rule:{name}"),
            ScopeKey::Tenant(name) => write!(f, "tenant:{name}"),
        }
    }
}

/// A request's window and the target share that applies to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationScope {
    /// The window.
    pub key: ScopeKey,
    /// The target share.
    pub target: TargetShare,
}

/// Bounds a window store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Scores kept per window.
    pub capacity: usize,
    /// Tenant windows kept.
    pub max_tenant_windows: usize,
}

/// A state store failed (a shared store may be unreachable): windows,
/// learned arms, spend. The message says which store and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// What a [`ScoreWindows`] call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Rolling windows of recent scores, one per [`ScopeKey`]. Calls are
/// batched and asynchronous so that a store shared across replicas (one
/// round trip per batch) fits the same interface as [`MemoryWindows`].
pub trait ScoreWindows: Send + Sync {
    /// Appends `scores` (oldest first) to the window of `scope`, keeps its
    /// `limits.capacity` most recent scores, and returns the window as it
    /// stands after the merge, including other replicas' scores.
    fn merge<'a>(
        &'a self,
        scope: &'a ScopeKey,
        scores: &'a [f64],
        limits: WindowLimits,
    ) -> StoreFuture<'a, Vec<f64>>;

    /// The window of `scope` (empty when it has none).
    fn get<'a>(&'a self, scope: &'a ScopeKey) -> StoreFuture<'a, Vec<f64>>;
}

#[derive(Debug, Default)]
struct Ring {
    scores: VecDeque<f64>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Rings {
    windows: HashMap<ScopeKey, Ring>,
    tick: u64,
}

/// Windows in this process's memory: a ring per scope, tenant windows
/// capped (least recently used evicted).
#[derive(Debug, Default)]
pub struct MemoryWindows {
    rings: Mutex<Rings>,
}

impl MemoryWindows {
    /// No window yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many windows are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .windows
            .len()
    }

    /// Whether no window is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn merge_now(&self, scope: &ScopeKey, scores: &[f64], limits: WindowLimits) -> Vec<f64> {
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings.tick += 1;
        let tick = rings.tick;
        if scope.is_tenant() && !rings.windows.contains_key(scope) {
            evict_tenants(&mut rings.windows, limits.max_tenant_windows, |r| {
                r.last_used
            });
        }
        let ring = rings.windows.entry(scope.clone()).or_default();
        ring.last_used = tick;
        ring.scores.extend(scores.iter().copied());
        let excess = ring.scores.len().saturating_sub(limits.capacity);
        ring.scores.drain(..excess);
        ring.scores.iter().copied().collect()
    }
}

/// Drops least recently used tenant entries until one more fits under
/// `max`.
fn evict_tenants<V>(map: &mut HashMap<ScopeKey, V>, max: usize, last_used: impl Fn(&V) -> u64) {
    loop {
        let tenants = map.keys().filter(|k| k.is_tenant()).count();
        if tenants < max.max(1) {
            return;
        }
        let oldest = map
            .iter()
            .filter(|(k, _)| k.is_tenant())
            .min_by_key(|(_, v)| last_used(v))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            None => return,
        }
    }
}

impl ScoreWindows for MemoryWindows {
    fn merge<'a>(
        &'a self,
        scope: &'a ScopeKey,
        scores: &'a [f64],
        limits: WindowLimits,
    ) -> StoreFuture<'a, Vec<f64>> {
        let window = self.merge_now(scope, scores, limits);
        Box::pin(std::future::ready(Ok(window)))
    }

    fn get<'a>(&'a self, scope: &'a ScopeKey) -> StoreFuture<'a, Vec<f64>> {
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let window = rings
            .windows
            .get(scope)
            .map(|r| r.scores.iter().copied().collect())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(window)))
    }
}

/// The cut-offs that put `target` of the `sorted` (ascending) scores in
/// each tier: the hard cut-off is the smallest of the `round(n·hard)`
/// highest scores, the medium one the smallest of the `round(n·(medium +
/// hard))` highest. Never `hard < medium`. `None` for an empty window.
pub fn quantile_cutoffs(sorted: &[f64], target: TargetShare) -> Option<Cutoffs> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let above = |share: f64| -> f64 {
        let count = (n as f64 * share.clamp(0.0, 1.0)).round();
        // `count` is in [0, n]: the conversion is exact.
        let count = count as usize;
        match count {
            0 => f64::INFINITY,
            c => sorted.get(n - c.min(n)).copied().unwrap_or(f64::INFINITY),
        }
    };
    let hard = above(target.hard);
    let medium = above(target.hard + target.medium).min(hard);
    Some(Cutoffs { medium, hard })
}

/// A deterministic value in `[0, 1)` for `text`: FNV-1a, then the
/// SplitMix64 finaliser so that texts differing in their last bytes spread
/// over the whole interval.
pub fn text_unit(text: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The score a window ranks: `score` spread over its rounding interval
/// (`resolution` wide, clipped to `[0, 1]`) by `unit` in `[0, 1)`.
pub fn window_key(score: f64, resolution: f64, unit: f64) -> f64 {
    if resolution.is_nan() || resolution <= 0.0 {
        return score;
    }
    let lo = (score - resolution / 2.0).max(0.0);
    let hi = (score + resolution / 2.0).min(1.0);
    lo + unit.clamp(0.0, 1.0) * (hi - lo).max(0.0)
}

/// Where a request's cut-offs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationSource {
    /// The quantiles of a window with enough scores.
    Window,
    /// The static cut-offs: no window has enough scores yet.
    ColdStart,
    /// The static cut-offs: calibration is disabled.
    Static,
}

impl CalibrationSource {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationSource::Window => "window",
            CalibrationSource::ColdStart => "cold_start",
            CalibrationSource::Static => "static",
        }
    }
}

/// A request's calibrated tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrated {
    /// The tier.
    pub difficulty: Difficulty,
    /// What the route explanation shows.
    pub explanation: CalibrationExplanation,
    /// The window's buffer is full: call [`Calibrator::refresh`] for it.
    pub refresh: Option<ScopeKey>,
}

#[derive(Debug, Default)]
struct ScopeState {
    /// The window at the last merge, ascending.
    sorted: Vec<f64>,
    /// Scores not merged yet.
    pending: Vec<f64>,
    refreshing: bool,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Scopes {
    scopes: HashMap<ScopeKey, ScopeState>,
    tick: u64,
}

/// Decides tiers from window snapshots and feeds the windows.
pub struct Calibrator {
    store: Arc<dyn ScoreWindows>,
    state: Mutex<Scopes>,
}

impl fmt::Debug for Calibrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calibrator").finish_non_exhaustive()
    }
}

impl Default for Calibrator {
    fn default() -> Self {
        Self::new(Arc::new(MemoryWindows::new()))
    }
}

impl Calibrator {
    /// A calibrator over `store`.
    pub fn new(store: Arc<dyn ScoreWindows>) -> Self {
        Self {
            store,
            state: Mutex::new(Scopes::default()),
        }
    }

    /// The tier for a prompt with needs-strong `score` (as the classifier
    /// sent it) and text `text`, under `scope`; the score joins the scope's
    /// buffer.
    pub fn calibrate(
        &self,
        config: &CalibrationConfig,
        scope: &CalibrationScope,
        score: f32,
        text: &str,
    ) -> Calibrated {
        let raw = f64::from(score);
        let key = window_key(raw, config.score_resolution, text_unit(text));
        if !config.enabled {
            let cutoffs = config.cold_start_cutoffs();
            return Calibrated {
                difficulty: cutoffs.tier(raw),
                explanation: explanation(
                    &scope.key,
                    0,
                    scope.target,
                    cutoffs,
                    CalibrationSource::Static,
                    raw,
                ),
                refresh: None,
            };
        }
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        state.tick += 1;
        let tick = state.tick;
        let min = config.min_scores.max(1);
        let from = [&scope.key, &ScopeKey::Global].into_iter().find_map(|k| {
            state
                .scopes
                .get(k)
                .filter(|s| s.sorted.len() >= min)
                .map(|s| (k.clone(), s))
        });
        let calibrated = match from.and_then(|(k, s)| {
            quantile_cutoffs(&s.sorted, scope.target).map(|c| (k, s.sorted.len(), c))
        }) {
            Some((window, n, cutoffs)) => (
                cutoffs.tier(key),
                explanation(
                    &window,
                    n,
                    scope.target,
                    cutoffs,
                    CalibrationSource::Window,
                    key,
                ),
            ),
            None => {
                let cutoffs = config.cold_start_cutoffs();
                let n = state.scopes.get(&scope.key).map_or(0, |s| s.sorted.len());
                (
                    cutoffs.tier(raw),
                    explanation(
                        &scope.key,
                        n,
                        scope.target,
                        cutoffs,
                        CalibrationSource::ColdStart,
                        raw,
                    ),
                )
            }
        };
        if scope.key.is_tenant() && !state.scopes.contains_key(&scope.key) {
            evict_tenants(&mut state.scopes, config.max_tenant_windows, |s| {
                s.last_used
            });
        }
        let entry = state.scopes.entry(scope.key.clone()).or_default();
        entry.last_used = tick;
        // While a merge is in flight (or the store cannot be reached) the
        // buffer holds at most a window's worth; later scores are dropped.
        if entry.pending.len() < config.window.max(1) {
            entry.pending.push(key);
        }
        let due = !entry.refreshing && entry.pending.len() >= config.recompute_every.max(1);
        Calibrated {
            difficulty: calibrated.0,
            explanation: calibrated.1,
            refresh: due.then(|| scope.key.clone()),
        }
    }

    /// Merges the buffered scores of `scope` into the store and re-sorts
    /// its snapshot. A concurrent refresh of the same scope makes this a
    /// no-op; on a store error the scores are dropped and the previous
    /// snapshot kept.
    pub async fn refresh(
        &self,
        scope: &ScopeKey,
        config: &CalibrationConfig,
    ) -> Result<(), StoreError> {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(s) = state.scopes.get_mut(scope) else {
                return Ok(());
            };
            if s.refreshing || s.pending.is_empty() {
                return Ok(());
            }
            s.refreshing = true;
            std::mem::take(&mut s.pending)
        };
        let merged = self.store.merge(scope, &pending, config.limits()).await;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = state.scopes.get_mut(scope);
        match merged {
            Ok(mut window) => {
                window.retain(|v| v.is_finite());
                window.sort_unstable_by(f64::total_cmp);
                if let Some(s) = slot {
                    s.sorted = window;
                    s.refreshing = false;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(s) = slot {
                    s.refreshing = false;
                }
                Err(e)
            }
        }
    }

    /// Reloads the snapshot of `scope` from the store (e.g. at start-up,
    /// to take up a shared window).
    pub async fn load(&self, scope: &ScopeKey) -> Result<(), StoreError> {
        let mut window = self.store.get(scope).await?;
        window.retain(|v| v.is_finite());
        window.sort_unstable_by(f64::total_cmp);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.scopes.entry(scope.clone()).or_default().sorted = window;
        Ok(())
    }

    /// The cut-offs `scope` would get now (without a score): for metrics.
    pub fn status(
        &self,
        config: &CalibrationConfig,
        scope: &CalibrationScope,
    ) -> CalibrationExplanation {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let n = state.scopes.get(&scope.key).map_or(0, |s| s.sorted.len());
        let window = state
            .scopes
            .get(&scope.key)
            .filter(|s| config.enabled && s.sorted.len() >= config.min_scores.max(1))
            .and_then(|s| quantile_cutoffs(&s.sorted, scope.target));
        let (cutoffs, source) = match window {
            Some(c) => (c, CalibrationSource::Window),
            None if config.enabled => (config.cold_start_cutoffs(), CalibrationSource::ColdStart),
            None => (config.cold_start_cutoffs(), CalibrationSource::Static),
        };
        CalibrationExplanation {
            window: scope.key.to_string(),
            n: n as u64,
            target_share: crate::api::TierShares {
                medium: scope.target.medium,
                hard: scope.target.hard,
            },
            thresholds: cutoffs.wire(),
            source: source.as_str().to_owned(),
            score: None,
        }
    }

    /// How many windows this calibrator holds snapshots of.
    pub fn windows(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .scopes
            .len()
    }
}

fn explanation(
    window: &ScopeKey,
    n: usize,
    target: TargetShare,
    cutoffs: Cutoffs,
    source: CalibrationSource,
    score: f64,
) -> CalibrationExplanation {
    CalibrationExplanation {
        window: window.to_string(),
        n: n as u64,
        target_share: crate::api::TierShares {
            medium: target.medium,
            hard: target.hard,
        },
        thresholds: cutoffs.wire(),
        source: source.as_str().to_owned(),
        score: Some(score),
    }
}
