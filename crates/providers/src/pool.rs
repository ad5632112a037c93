//! Capacity-aware balancing inside a pool: several endpoints serving one
//! model (e.g. Ollama replicas).
//!
//! Balancing happens only *inside* a pool. When every endpoint is at
//! capacity a request waits for the pool, first come first served: it never
//! drifts to whichever model has the fewest requests in flight, which would
//! send cheap traffic to the premium model exactly when load is high (the
//! "least connections cost trap").

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How an endpoint is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PickStrategy {
    /// The endpoint with the fewest requests in flight.
    #[default]
    LeastOutstanding,
    /// The lowest `peak-EWMA latency × (in flight + 1)`: the latency EWMA
    /// jumps to any slower sample at once and decays towards faster ones.
    PeakEwma,
}

/// One pool's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Pool name, for logs and listings.
    pub name: String,
    /// How endpoints are picked.
    pub strategy: PickStrategy,
    /// Endpoint base URLs (or any id the caller maps to one).
    pub endpoints: Vec<String>,
    /// Requests in flight per endpoint before the pool is full; `None`: no
    /// limit.
    pub max_outstanding: Option<u32>,
    /// Decay of the peak-EWMA towards faster samples, in `(0, 1]`.
    pub ewma_alpha: f64,
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
