//! Capacity-aware balancing inside a model pool: several endpoints serving
//! one model (e.g. Ollama replicas).
//!
//! Balancing happens only *inside* a pool. When every endpoint of the chosen
//! model's pool is at capacity the request waits for that pool (or, if the
//! pool's `spill_to` allows it, goes to one of the named models): it never
//! drifts to whichever model has the fewest requests in flight, which would
//! send cheap traffic to the premium model exactly when load is high (the
//! "least connections cost trap").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Policy;
use super::select::{Candidate, Decision};

/// How an endpoint is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickStrategy {
    /// The endpoint with the fewest requests in flight.
    #[default]
    LeastOutstanding,
    /// The lowest `peak-EWMA latency × (in flight + 1)`: the latency EWMA
    /// jumps to any slower sample at once and decays towards faster ones.
    PeakEwma,
}

/// One pool (the policy file's `[[pool]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name, referenced by models' `pool`.
    pub name: String,
    /// How endpoints are picked.
    #[serde(default)]
    pub strategy: PickStrategy,
    /// Endpoint base URLs (or any id the caller maps to one).
    pub endpoints: Vec<String>,
    /// Requests in flight per endpoint before the pool is full; absent: no
    /// limit.
    #[serde(default)]
    pub max_outstanding: Option<u32>,
    /// Catalogue ids a request may go to when the pool is full, in order;
    /// empty: requests wait for the pool.
    #[serde(default)]
    pub spill_to: Vec<String>,
    /// Decay of the peak-EWMA towards faster samples, in `(0, 1]`.
    #[serde(default = "default_alpha")]
    pub ewma_alpha: f64,
}

fn default_alpha() -> f64 {
    0.3
}

#[derive(Debug)]
struct Endpoint {
    url: String,
    outstanding: AtomicU32,
    /// Peak-EWMA latency in microseconds, as f64 bits; 0 = no sample yet.
    ewma_us: AtomicU64,
    picks: AtomicU64,
}

#[derive(Debug)]
struct PoolInner {
    config: PoolConfig,
    endpoints: Vec<Endpoint>,
    slots: Option<Arc<Semaphore>>,
    rotation: AtomicUsize,
    record_lock: Mutex<()>,
}

/// A pool of endpoints serving one model. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// A snapshot of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointLoad {
    /// The endpoint.
    pub url: String,
    /// Requests in flight.
    pub outstanding: u32,
    /// Peak-EWMA latency in milliseconds, when measured.
    pub ewma_ms: Option<f64>,
    /// Requests picked so far.
    pub picks: u64,
}

impl Pool {
    /// A pool with no requests in flight.
    pub fn new(config: PoolConfig) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .map(|url| Endpoint {
                url: url.clone(),
                outstanding: AtomicU32::new(0),
                ewma_us: AtomicU64::new(0f64.to_bits()),
                picks: AtomicU64::new(0),
            })
            .collect::<Vec<_>>();
        let slots = config.max_outstanding.map(|per| {
            let total = usize::try_from(per)
                .unwrap_or(usize::MAX)
                .saturating_mul(endpoints.len())
                .min(Semaphore::MAX_PERMITS);
            Arc::new(Semaphore::new(total))
        });
        Self {
            inner: Arc::new(PoolInner {
                config,
                endpoints,
                slots,
                rotation: AtomicUsize::new(0),
                record_lock: Mutex::new(()),
            }),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Catalogue ids this pool may spill to when full.
    pub fn spill_to(&self) -> &[String] {
        &self.inner.config.spill_to
    }

    /// Requests in flight over all endpoints.
    pub fn outstanding(&self) -> u32 {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.outstanding.load(Ordering::Acquire))
            .sum()
    }

    /// Whether every endpoint is at capacity.
    pub fn is_full(&self) -> bool {
        self.inner
            .slots
            .as_ref()
            .is_some_and(|s| s.available_permits() == 0)
    }

    /// Each endpoint's load.
    pub fn endpoints(&self) -> Vec<EndpointLoad> {
        self.inner
            .endpoints
            .iter()
            .map(|e| {
                let us = f64::from_bits(e.ewma_us.load(Ordering::Acquire));
                EndpointLoad {
                    url: e.url.clone(),
                    outstanding: e.outstanding.load(Ordering::Acquire),
                    ewma_ms: (us > 0.0).then_some(us / 1000.0),
                    picks: e.picks.load(Ordering::Acquire),
                }
            })
            .collect()
    }

    /// Takes a slot now, or `None` when every endpoint is at capacity.
    pub fn try_pick(&self) -> Option<PoolGuard> {
        let permit = match &self.inner.slots {
            None => None,
            Some(slots) => Some(slots.clone().try_acquire_owned().ok()?),
        };
        Some(self.place(permit))
    }

    /// Waits (first come, first served) for a slot.
    pub async fn pick(&self) -> PoolGuard {
        let permit = match &self.inner.slots {
            None => None,
            // The semaphore is never closed; if it were, the request goes
            // ahead without a slot rather than failing.
            Some(slots) => slots.clone().acquire_owned().await.ok(),
        };
        self.place(permit)
    }

    /// Picks the endpoint for a request holding `permit` (a pool slot).
    fn place(&self, permit: Option<OwnedSemaphorePermit>) -> PoolGuard {
        let inner = &self.inner;
        let n = inner.endpoints.len().max(1);
        let cap = inner.config.max_outstanding.unwrap_or(u32::MAX);
        let start = inner.rotation.fetch_add(1, Ordering::Relaxed) % n;
        // A permit guarantees a free slot somewhere; concurrent pickers may
        // race for the same one, so claim with a compare-and-swap and retry.
        for _attempt in 0..8 {
            let mut best: Option<(usize, f64, u32)> = None;
            for k in 0..inner.endpoints.len() {
                let i = (start + k) % n;
                let e = &inner.endpoints[i];
                let out = e.outstanding.load(Ordering::Acquire);
                if out >= cap {
                    continue;
                }
                let cost = match inner.config.strategy {
                    PickStrategy::LeastOutstanding => f64::from(out),
                    PickStrategy::PeakEwma => {
                        let ewma = f64::from_bits(e.ewma_us.load(Ordering::Acquire));
                        ewma * f64::from(out + 1)
                    }
                };
                if best.is_none_or(|(_, c, o)| cost < c || (cost == c && out < o)) {
                    best = Some((i, cost, out));
                }
            }
            let Some((i, _, out)) = best else { break };
            let e = &inner.endpoints[i];
            if e.outstanding
                .compare_exchange(out, out + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                e.picks.fetch_add(1, Ordering::Relaxed);
                return PoolGuard::new(self.clone(), i, permit);
            }
        }
        // Contention or no capacity information: take the least loaded.
        let i = inner
            .endpoints
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.outstanding.load(Ordering::Acquire))
            .map_or(0, |(i, _)| i);
        if let Some(e) = inner.endpoints.get(i) {
            e.outstanding.fetch_add(1, Ordering::AcqRel);
            e.picks.fetch_add(1, Ordering::Relaxed);
        }
        PoolGuard::new(self.clone(), i, permit)
    }

    fn record(&self, endpoint: usize, latency: Duration) {
        let Some(e) = self.inner.endpoints.get(endpoint) else {
            return;
        };
        let _serial = self
            .inner
            .record_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let sample = latency.as_secs_f64() * 1e6;
        let old = f64::from_bits(e.ewma_us.load(Ordering::Acquire));
        let alpha = self.inner.config.ewma_alpha.clamp(f64::MIN_POSITIVE, 1.0);
        let new = if old <= 0.0 || sample > old {
            sample
        } else {
            alpha * sample + (1.0 - alpha) * old
        };
        e.ewma_us.store(new.to_bits(), Ordering::Release);
    }
}

/// A request's hold on one endpoint of a pool. Dropping it frees the slot;
/// unless [`PoolGuard::record`] gave the latency, the time since the pick is
/// recorded.
#[derive(Debug)]
pub struct PoolGuard {
    pool: Pool,
    endpoint: usize,
    started: Instant,
    recorded: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl PoolGuard {
    fn new(pool: Pool, endpoint: usize, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            pool,
            endpoint,
            started: Instant::now(),
            recorded: false,
            _permit: permit,
        }
    }

    /// The picked endpoint.
    pub fn endpoint(&self) -> &str {
        self.pool
            .inner
            .endpoints
            .get(self.endpoint)
            .map_or("", |e| e.url.as_str())
    }

    /// The picked endpoint's position in the pool.
    pub fn endpoint_index(&self) -> usize {
        self.endpoint
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Records the call's latency (for peak-EWMA) and releases the slot.
    pub fn record(mut self, latency: Duration) {
        self.pool.record(self.endpoint, latency);
        self.recorded = true;
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        if !self.recorded {
            self.pool.record(self.endpoint, self.started.elapsed());
        }
        if let Some(e) = self.pool.inner.endpoints.get(self.endpoint) {
            let _ = e
                .outstanding
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }
}

/// Where a decision's request goes once pool capacity is taken into
/// account.
#[derive(Debug)]
pub enum Placement<'d> {
    /// The primary has no pool: call it.
    Direct(&'d Candidate),
    /// A slot in the primary's pool.
    Pooled {
        /// The primary.
        candidate: &'d Candidate,
        /// The slot; hold it for the call.
        guard: PoolGuard,
    },
    /// The primary's pool is full and its `spill_to` names this fallback.
    Spilled {
        /// The fallback taken.
        candidate: &'d Candidate,
        /// The full pool.
        from_pool: String,
        /// A slot, when the fallback has a pool of its own.
        guard: Option<PoolGuard>,
    },
    /// The primary's pool is full and may not spill (or its spill targets are
    /// full or not allowed for this request): wait with [`Pool::pick`].
    Queue {
        /// The primary.
        candidate: &'d Candidate,
        /// The pool to wait for.
        pool: Pool,
    },
}

/// The pools of one policy, by name.
///
/// Build them once with [`Pools::from_policy`]; after a policy reload,
/// build new ones (requests in flight keep their guards, which hold their
/// own pool, so their slots are released where they were taken).
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pools: HashMap<String, Pool>,
}

impl Pools {
    /// Empty pools for every `[[pool]]` of `policy`.
    pub fn from_policy(policy: &Policy) -> Self {
        Self {
            pools: policy
                .pool_configs()
                .iter()
                .map(|c| (c.name.clone(), Pool::new(c.clone())))
                .collect(),
        }
    }

    /// A pool by name.
    pub fn get(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    /// Places a decision: a slot in the primary's pool; when that pool is
    /// full, a spill target the pool allows *and* the decision lists as a
    /// fallback (so spill never breaks the request's hard constraints);
    /// otherwise the request queues on the primary's pool.
    pub fn place<'d>(&self, decision: &'d Decision) -> Placement<'d> {
        let primary = &decision.primary;
        let Some(pool) = primary
            .model
            .pool
            .as_deref()
            .and_then(|name| self.pools.get(name))
        else {
            return Placement::Direct(primary);
        };
        if let Some(guard) = pool.try_pick() {
            return Placement::Pooled {
                candidate: primary,
                guard,
            };
        }
        for target in pool.spill_to() {
            let Some(candidate) = decision.fallbacks.iter().find(|c| &c.model.id == target) else {
                continue;
            };
            match candidate
                .model
                .pool
                .as_deref()
                .and_then(|name| self.pools.get(name))
            {
                None => {
                    return Placement::Spilled {
                        candidate,
                        from_pool: pool.name().to_owned(),
                        guard: None,
                    };
                }
                Some(other) => {
                    if let Some(guard) = other.try_pick() {
                        return Placement::Spilled {
                            candidate,
                            from_pool: pool.name().to_owned(),
                            guard: Some(guard),
                        };
                    }
                }
            }
        }
        Placement::Queue {
            candidate: primary,
            pool: pool.clone(),
        }
    }
}
