//! Live per-model measurements fed by every call: latency (EWMA and a
//! sliding-window percentile) and a circuit breaker.
//!
//! The breaker counts only what its caller reports as the provider's own
//! fault ([`LiveStats::observe_fault`]); it opens on consecutive faults or
//! on a failure rate over a window of recent outcomes, lets a limited
//! number of probe calls through once its cool-down is over
//! ([`LiveStats::admit`]) and remembers the last fault's cause, so an open
//! breaker can say why it is open.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A monotonic clock, so breakers can run on virtual time in tests and
/// simulations.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since the clock's own origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Saturating add via a CAS loop, so a huge step cannot wrap.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `to`, if that is not in its past.
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(to, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// How live statistics are kept (the policy file's `[live]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Weight of the newest sample in the latency EWMA, in `(0, 1]`.
    pub ewma_alpha: f64,
    /// Samples kept per model for the percentile.
    pub window: usize,
    /// The percentile the latency budget is checked against, in `(0, 1]`.
    pub percentile: f64,
    /// Samples needed before live latency replaces the static prior.
    pub min_samples: usize,
    /// Consecutive failures that open a model's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker keeps a model out before a trial call.
    pub breaker_cooldown_ms: u64,
    /// Recent outcomes (successes and provider faults) the failure rate is
    /// taken over.
    pub breaker_window: usize,
    /// The failure rate over the window, in `(0, 1]`, that opens the breaker.
    pub breaker_failure_rate: f64,
    /// Outcomes needed in the window before the failure rate is trusted.
    pub breaker_min_calls: usize,
    /// Trial calls let through at once while the breaker is half-open.
    pub breaker_probes: u32,
}

impl LiveConfig {
    /// The configuration with out-of-range values brought into range: a
    /// window of at least one sample, `ewma_alpha` in `(0, 1]` and
    /// `percentile` in `[0, 1]` (non-finite values take the defaults).
    fn normalised(self) -> Self {
        Self {
            window: self.window.max(1),
            ewma_alpha: if self.ewma_alpha.is_finite() {
                self.ewma_alpha.clamp(f64::MIN_POSITIVE, 1.0)
            } else {
                LiveConfig::default().ewma_alpha
            },
            percentile: if self.percentile.is_finite() {
                self.percentile.clamp(0.0, 1.0)
            } else {
                LiveConfig::default().percentile
            },
            breaker_window: self.breaker_window.max(1),
            breaker_failure_rate: if self.breaker_failure_rate.is_finite() {
                self.breaker_failure_rate.clamp(f64::MIN_POSITIVE, 1.0)
            } else {
                LiveConfig::default().breaker_failure_rate
            },
            breaker_probes: self.breaker_probes.max(1),
            ..self
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            ewma_alpha: 0.2,
            window: 100,
            percentile: 0.9,
            min_samples: 10,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            breaker_window: 20,
            breaker_failure_rate: 0.5,
            breaker_min_calls: 10,
            breaker_probes: 1,
        }
    }
}

/// A model's circuit-breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Too many consecutive failures: the model is skipped.
    Open {
        /// Milliseconds until a trial call is allowed.
        retry_in_ms: u64,
    },
    /// The cool-down is over: a limited number of trial calls flow (see
    /// [`LiveStats::admit`]), and the next outcome closes (success) or
    /// re-opens (provider fault) the breaker.
    HalfOpen,
}

/// What is known live about one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiveLatency {
    /// Successful calls in the window.
    pub samples: usize,
    /// Exponentially weighted moving average, in milliseconds.
    pub ewma_ms: f64,
    /// The configured percentile over the window, in milliseconds.
    pub percentile_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Duration },
    HalfOpen,
}

#[derive(Debug)]
struct ModelLive {
    window: Vec<f64>,
    next: usize,
    ewma: f64,
    percentile: f64,
    breaker: Breaker,
    /// Recent breaker outcomes, oldest first: `true` for a provider fault.
    outcomes: VecDeque<bool>,
    /// Trial calls admitted and not finished while half-open.
    probes: u32,
    /// What the last provider fault was.
    last_cause: Option<String>,
}

impl ModelLive {
    fn new(capacity: usize) -> Self {
        Self {
            window: Vec::with_capacity(capacity),
            next: 0,
            ewma: 0.0,
            percentile: 0.0,
            breaker: Breaker::Closed { failures: 0 },
            outcomes: VecDeque::new(),
            probes: 0,
            last_cause: None,
        }
    }

    /// Keeps the newest `config.window` samples, oldest first, and
    /// recomputes the percentile for `config`. The EWMA and the breaker
    /// carry over.
    fn resize(&mut self, config: &LiveConfig) {
        // A full ring's oldest sample is at `next`; a filling one is in
        // order already (`next` is its length).
        if self.next < self.window.len() {
            self.window.rotate_left(self.next);
        }
        let excess = self.window.len().saturating_sub(config.window);
        self.window.drain(..excess);
        self.next = self.window.len() % config.window;
        self.percentile = percentile(&self.window, config.percentile);
    }

    fn breaker_at(&self, now: Duration) -> Breaker {
        match self.breaker {
            Breaker::Open { until } if now >= until => Breaker::HalfOpen,
            other => other,
        }
    }
}

/// Live latency and breaker state for every model; shared by all requests.
///
/// Thread-safe: one short lock per model per call; the percentile is
/// recomputed on `observe`, so reads are O(1).
#[derive(Debug, Clone)]
pub struct LiveStats {
    inner: Arc<LiveInner>,
}

#[derive(Debug)]
struct LiveInner {
    config: RwLock<LiveConfig>,
    clock: Arc<dyn Clock>,
    models: RwLock<HashMap<String, Arc<Mutex<ModelLive>>>>,
}

impl LiveStats {
    /// Statistics on the real clock.
    pub fn new(config: LiveConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// Statistics on the given clock.
    pub fn with_clock(config: LiveConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(LiveInner {
                config: RwLock::new(config.normalised()),
                clock,
                models: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> LiveConfig {
        *self
            .inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `config` in force (a reloaded policy's `[live]`). Every model
    /// keeps its newest samples up to the new window, its percentile is
    /// recomputed, and its EWMA and breaker carry over: the new smoothing
    /// and breaker thresholds apply from the next call (a breaker already
    /// open keeps its cool-down).
    pub fn reconfigure(&self, config: LiveConfig) {
        let config = config.normalised();
        // The configuration first, then each model under its own lock:
        // `observe` reads the configuration while holding the model's lock,
        // so every model ends up shaped for the new configuration.
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        let models: Vec<_> = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for model in models {
            model
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .resize(&config);
        }
    }

    fn entry(&self, model: &str) -> Arc<Mutex<ModelLive>> {
        if let Some(found) = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
        {
            return found.clone();
        }
        let mut models = self
            .inner
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        models
            .entry(model.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(ModelLive::new(self.config().window))))
            .clone()
    }

    fn get(&self, model: &str) -> Option<Arc<Mutex<ModelLive>>> {
        self.inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .cloned()
    }

    /// Records the outcome of one call to `model` (a catalogue id): a
    /// success, or (`ok: false`) a provider fault of unnamed cause.
    ///
    /// Only successful calls feed the latency statistics (a fast error says
    /// nothing about how long an answer takes); both drive the breaker.
    /// A failure that is not the provider's fault (the caller's budget, a
    /// bad request, provider-proxy's health) must not be observed at all.
    pub fn observe(&self, model: &str, latency: Duration, ok: bool) {
        self.record(model, latency, if ok { None } else { Some("failure") });
    }

    /// Records a provider fault of `model`, naming its cause (kept for the
    /// open breaker's message).
    pub fn observe_fault(&self, model: &str, latency: Duration, cause: &str) {
        self.record(model, latency, Some(cause));
    }

    fn record(&self, model: &str, latency: Duration, fault: Option<&str>) {
        let ok = fault.is_none();
        let now = self.inner.clock.now();
        let entry = self.entry(model);
        let mut live = entry.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the model's lock (see `reconfigure`).
        let config = &self.config();
        if ok {
            let ms = latency.as_secs_f64() * 1000.0;
            if live.window.len() < config.window {
                live.window.push(ms);
            } else {
                let slot = live.next % live.window.len();
                live.window[slot] = ms;
            }
            live.next = (live.next + 1) % config.window;
            live.ewma = if live.window.len() == 1 {
                ms
            } else {
                config.ewma_alpha * ms + (1.0 - config.ewma_alpha) * live.ewma
            };
            live.percentile = percentile(&live.window, config.percentile);
        }
        if let Some(cause) = fault {
            live.last_cause = Some(cause.to_owned());
        }
        let cooldown = Duration::from_millis(config.breaker_cooldown_ms);
        let open = Breaker::Open {
            until: now.saturating_add(cooldown),
        };
        live.breaker = match (live.breaker_at(now), ok) {
            (Breaker::Closed { .. } | Breaker::HalfOpen, true) => {
                push_outcome(&mut live.outcomes, false, config.breaker_window);
                Breaker::Closed { failures: 0 }
            }
            (Breaker::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                push_outcome(&mut live.outcomes, true, config.breaker_window);
                let faults = live.outcomes.iter().filter(|f| **f).count();
                let rate_exceeded = live.outcomes.len() >= config.breaker_min_calls.max(1)
                    && faults as f64 >= config.breaker_failure_rate * live.outcomes.len() as f64;
                if failures >= config.breaker_failures.max(1) || rate_exceeded {
                    live.outcomes.clear();
                    open
                } else {
                    Breaker::Closed { failures }
                }
            }
            (Breaker::HalfOpen, false) => {
                live.outcomes.clear();
                open
            }
            // A late answer from before the breaker opened changes nothing.
            (open @ Breaker::Open { .. }, _) => open,
        };
    }

    /// Asks to call `model` now: `None` while its breaker is open, or while
    /// it is half-open and its trial calls are all taken. The admission
    /// holds a half-open breaker's trial slot until it is dropped, whatever
    /// the outcome (a call the provider is not to blame for frees its slot
    /// without closing or re-opening the breaker).
    pub fn admit(&self, model: &str) -> Option<Admission> {
        let now = self.inner.clock.now();
        let entry = self.entry(model);
        let probes = self.config().breaker_probes.max(1);
        let mut live = entry.lock().unwrap_or_else(PoisonError::into_inner);
        match live.breaker_at(now) {
            Breaker::Closed { .. } => Some(Admission { probe: None }),
            Breaker::Open { .. } => None,
            Breaker::HalfOpen if live.probes < probes => {
                live.breaker = Breaker::HalfOpen;
                live.probes += 1;
                drop(live);
                Some(Admission { probe: Some(entry) })
            }
            Breaker::HalfOpen => None,
        }
    }

    /// The cause of `model`'s last provider fault, if it had one.
    pub fn last_cause(&self, model: &str) -> Option<String> {
        let entry = self.get(model)?;
        let live = entry.lock().unwrap_or_else(PoisonError::into_inner);
        live.last_cause.clone()
    }

    /// The breaker state of `model` and its trusted live latency, with one
    /// lookup (what selection reads per candidate).
    pub fn status(&self, model: &str) -> (BreakerState, Option<LiveLatency>) {
        let Some(entry) = self.get(model) else {
            return (BreakerState::Closed, None);
        };
        let now = self.inner.clock.now();
        let live = entry.lock().unwrap_or_else(PoisonError::into_inner);
        let breaker = match live.breaker_at(now) {
            Breaker::Closed { .. } => BreakerState::Closed,
            Breaker::HalfOpen => BreakerState::HalfOpen,
            Breaker::Open { until } => BreakerState::Open {
                retry_in_ms: u64::try_from(until.saturating_sub(now).as_millis())
                    .unwrap_or(u64::MAX),
            },
        };
        let latency =
            (live.window.len() >= self.config().min_samples.max(1)).then(|| LiveLatency {
                samples: live.window.len(),
                ewma_ms: live.ewma,
                percentile_ms: live.percentile,
            });
        (breaker, latency)
    }

    /// The breaker state of `model` now.
    pub fn breaker(&self, model: &str) -> BreakerState {
        self.status(model).0
    }

    /// Live latency of `model`, if it has any successful samples.
    pub fn latency(&self, model: &str) -> Option<LiveLatency> {
        let entry = self.get(model)?;
        let live = entry.lock().unwrap_or_else(PoisonError::into_inner);
        (!live.window.is_empty()).then(|| LiveLatency {
            samples: live.window.len(),
            ewma_ms: live.ewma,
            percentile_ms: live.percentile,
        })
    }

    /// Live latency of `model` when there are enough samples to trust it.
    pub fn trusted_latency(&self, model: &str) -> Option<LiveLatency> {
        self.latency(model)
            .filter(|l| l.samples >= self.config().min_samples.max(1))
    }
}

impl Default for LiveStats {
    fn default() -> Self {
        Self::new(LiveConfig::default())
    }
}

/// Permission to call a model, from [`LiveStats::admit`]; a half-open
/// breaker's trial slot is given back when it is dropped.
#[derive(Debug)]
pub struct Admission {
    probe: Option<Arc<Mutex<ModelLive>>>,
}

impl Admission {
    /// Whether this call is a half-open breaker's trial.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(entry) = self.probe.take() {
            let mut live = entry.lock().unwrap_or_else(PoisonError::into_inner);
            live.probes = live.probes.saturating_sub(1);
        }
    }
}

fn push_outcome(outcomes: &mut VecDeque<bool>, fault: bool, window: usize) {
    outcomes.push_back(fault);
    while outcomes.len() > window.max(1) {
        outcomes.pop_front();
    }
}

/// The `q` quantile of `samples` (nearest rank).
fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_the_breaker() {
        let live = LiveStats::with_clock(
            LiveConfig {
                breaker_failures: 100,
                breaker_window: 10,
                breaker_min_calls: 10,
                breaker_failure_rate: 0.5,
                ..LiveConfig::default()
            },
            Arc::new(ManualClock::new()),
        );
        // Alternating faults never reach 100 in a row, but half the window
        // failing does.
        for _ in 0..4 {
            live.observe("m", ms(10), true);
            live.observe_fault("m", ms(10), "provider_error: 500");
        }
        assert_eq!(live.breaker("m"), BreakerState::Closed);
        live.observe("m", ms(10), true);
        live.observe_fault("m", ms(10), "overloaded: busy");
        assert!(matches!(live.breaker("m"), BreakerState::Open { .. }));
        assert_eq!(live.last_cause("m").as_deref(), Some("overloaded: busy"));
    }

    #[test]
    fn a_half_open_breaker_admits_only_its_probes() {
        let clock = Arc::new(ManualClock::new());
        let live = LiveStats::with_clock(
            LiveConfig {
                breaker_failures: 1,
                breaker_cooldown_ms: 1000,
                breaker_probes: 2,
                ..LiveConfig::default()
            },
            clock.clone(),
        );
        assert!(live.admit("m").is_some_and(|a| !a.is_probe()));
        live.observe_fault("m", ms(10), "provider_error");
        assert!(live.admit("m").is_none());
        clock.advance(ms(1000));
        let first = live.admit("m");
        let second = live.admit("m");
        assert!(first.as_ref().is_some_and(Admission::is_probe));
        assert!(second.is_some());
        assert!(live.admit("m").is_none(), "a third probe while two run");
        // A probe that ends without a verdict frees its slot.
        drop(first);
        let third = live.admit("m");
        assert!(third.is_some());
        assert_eq!(live.breaker("m"), BreakerState::HalfOpen);
        live.observe("m", ms(10), true);
        assert_eq!(live.breaker("m"), BreakerState::Closed);
        drop((second, third));
        assert!(live.admit("m").is_some_and(|a| !a.is_probe()));
    }

    #[test]
    fn nearest_rank_percentile() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.9), 9.0);
        assert_eq!(percentile(&samples, 1.0), 10.0);
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert_eq!(percentile(&[5.0], 0.9), 5.0);
    }
}
