//! The Redis backend: one multiplexed connection per process, reconnected
//! in the background after a failure, every call bounded by a timeout.
//!
//! Keys (each behind the configured prefix):
//!
//! | key | type | what |
//! |---|---|---|
//! | `call:{call_id}` | hash `record`, `tenant`, `rated` | a call record; expires after the records' time to live; written only when absent, so the first record under a call id wins |
//! | `window:{scope}` | list of scores, oldest first | a calibration window, trimmed to its capacity at each merge |
//! | `windows:tenants` | sorted set, scope by last use (ms) | tenant windows, least recently used evicted past the cap |
//! | `arm:{model}\|{task}\|{tier}\|L{bucket}` | hash `n`, `sum` | one arm's observations in one context, added to atomically |
//! | `spend:{tenant}:{yyyy-mm-dd}`, `spend:{tenant}:{yyyy-mm}` | float (USD) | a tenant's spend in a UTC day and month (see `budgets`) |

use std::future::Future;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError, Script};
use routing_core::calls::{CallRecord, CallRecords, ClaimError};
use routing_core::policy::{
    ArmKey, ArmStats, ArmStore, ScopeKey, ScoreWindows, StoreError, StoreFuture, WindowLimits,
};
use tokio::time::Instant;

use crate::{RedisConfig, StateError, StateMetrics};

/// Writes a call record unless one is live under the same id.
/// KEYS[1] the record; ARGV[1] its JSON, ARGV[2] the tenant tag, ARGV[3]
/// the time to live in ms. Returns 1 when written.
const PUT_CALL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'tenant', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Claims a call record for feedback by a tenant, once.
/// KEYS[1] the record; ARGV[1] the claiming tenant's tag.
const CLAIM_CALL: &str = r"
local f = redis.call('HMGET', KEYS[1], 'record', 'tenant', 'rated')
if not f[1] then return {'unknown'} end
if f[2] ~= ARGV[1] then return {'other_tenant'} end
if f[3] then return {'rated'} end
redis.call('HSET', KEYS[1], 'rated', '1')
return {'ok', f[1]}
";

/// The shared store in a Redis server.
pub struct RedisState {
    conn: ConnectionManager,
    target: String,
    prefix: String,
    timeout: Duration,
    fail_fast: Duration,
    call_ttl: Duration,
    errors: IntCounterVec,
    up: IntGauge,
    failing_until: Mutex<Option<Instant>>,
    reachable: AtomicBool,
    put_call: Script,
    claim_call: Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where a connection goes, without credentials: for logs.
fn describe(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

impl RedisState {
    /// A store on the server `config` names; call records live for
    /// `call_ttl`, its calls counted in `metrics`. Connects lazily (must be
    /// called within a Tokio runtime): a server that is down is an error of
    /// each call, not of this one.
    pub fn open(
        config: &RedisConfig,
        call_ttl: Duration,
        metrics: StateMetrics,
    ) -> Result<Self, StateError> {
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| StateError::Config(format!("STATE_URL: {e}")))?;
        if let Some(password) = &config.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let target = describe(info.addr());
        let client = redis::Client::open(info).map_err(|e| StateError::Config(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.fail_fast.max(Duration::from_millis(50)));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StateError::Config(e.to_string()))?;
        Ok(Self {
            conn,
            target,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout + config.connect_timeout,
            fail_fast: config.fail_fast,
            call_ttl,
            errors: metrics.errors,
            up: metrics.up,
            failing_until: Mutex::new(None),
            reachable: AtomicBool::new(true),
            put_call: Script::new(PUT_CALL),
            claim_call: Script::new(CLAIM_CALL),
        })
    }

    /// Where the store is (host:port or socket path).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the server answers.
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        self.run("ping", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// A handle on the shared connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// Runs one store call under the timeout, counting and pausing on
    /// failure.
    pub(crate) async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StateError> {
        let paused = self
            .failing_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until);
        if paused {
            self.errors.with_label_values(&[op]).inc();
            return Err(StateError::Unavailable(format!(
                "{op} skipped: {} failed recently; retrying shortly",
                self.target
            )));
        }
        let (error, connection) = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.up.set(1);
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = %self.target, "state store reachable again");
                }
                return Ok(value);
            }
            Ok(Err(e)) => {
                let connection = e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped();
                (e.to_string(), connection)
            }
            Err(_) => (
                format!("no answer within {} ms", self.timeout.as_millis()),
                true,
            ),
        };
        self.errors.with_label_values(&[op]).inc();
        if connection {
            self.up.set(0);
            *self
                .failing_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + self.fail_fast);
            if self.reachable.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    store = %self.target, op, error = %error,
                    "state store unreachable: routing on without shared state until it is back"
                );
            }
        }
        Err(StateError::Unavailable(format!(
            "{op} on {}: {error}",
            self.target
        )))
    }
}

fn store_error(e: StateError) -> StoreError {
    StoreError(e.to_string())
}

/// The tag a call record's tenant is compared by: absent and empty differ.
fn tenant_tag(tenant: Option<&str>) -> String {
    tenant.map_or_else(|| "-".to_owned(), |t| format!("={t}"))
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn parse_scores(raw: Vec<String>) -> Vec<f64> {
    raw.iter()
        .filter_map(|s| s.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect()
}

impl CallRecords for RedisState {
    fn put(&self, record: CallRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&record)
                .map_err(|e| StoreError(format!("call record: {e}")))?;
            let key = self.key("call", &record.call_id);
            let ttl_ms = u64::try_from(self.call_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut conn = self.conn.clone();
            let mut invocation = self.put_call.key(&key);
            invocation
                .arg(json)
                .arg(tenant_tag(record.tenant.as_deref()))
                .arg(ttl_ms);
            self.run("calls_put", async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map(drop)
            .map_err(store_error)
        })
    }

    fn claim<'a>(
        &'a self,
        call_id: &'a str,
        tenant: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<CallRecord, ClaimError>> + Send + 'a>> {
        Box::pin(async move {
            let key = self.key("call", call_id);
            let mut conn = self.conn.clone();
            let mut invocation = self.claim_call.key(&key);
            invocation.arg(tenant_tag(tenant));
            let answer = self
                .run("calls_claim", async move {
                    invocation.invoke_async::<Vec<String>>(&mut conn).await
                })
                .await
                .map_err(|e| ClaimError::Store(e.to_string()))?;
            match answer.first().map(String::as_str) {
                Some("unknown") => Err(ClaimError::Unknown(call_id.to_owned())),
                Some("other_tenant") => Err(ClaimError::OtherTenant(call_id.to_owned())),
                Some("rated") => Err(ClaimError::AlreadyRated(call_id.to_owned())),
                Some("ok") => {
                    let json = answer.get(1).map_or("", String::as_str);
                    serde_json::from_str(json).map_err(|e| {
                        self.errors.with_label_values(&["calls_claim"]).inc();
                        ClaimError::Store(
                            StateError::Corrupt(format!("call record {call_id:?}: {e}"))
                                .to_string(),
                        )
                    })
                }
                _ => {
                    self.errors.with_label_values(&["calls_claim"]).inc();
                    Err(ClaimError::Store(
                        StateError::Corrupt(format!("claim answered {answer:?}")).to_string(),
                    ))
                }
            }
        })
    }
}

impl RedisState {
    /// Drops the least recently used tenant windows past `max` (best
    /// effort: a window merged meanwhile is simply recreated).
    async fn evict_tenant_windows(&self, max: usize) -> Result<(), StateError> {
        let index = self.key("windows", "tenants");
        let keep = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let mut conn = self.conn.clone();
        let stale: Vec<String> = self
            .run("windows_evict", async {
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-(keep + 1))
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if stale.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for scope in &stale {
            pipe.del(self.key("window", scope)).ignore();
            pipe.zrem(&index, scope).ignore();
        }
        let mut conn = self.conn.clone();
        self.run("windows_evict", async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }
}

impl ScoreWindows for RedisState {
    fn merge<'a>(
        &'a self,
        scope: &'a ScopeKey,
        scores: &'a [f64],
        limits: WindowLimits,
    ) -> StoreFuture<'a, Vec<f64>> {
        Box::pin(async move {
            let name = scope.to_string();
            let key = self.key("window", &name);
            let capacity = isize::try_from(limits.capacity.max(1)).unwrap_or(isize::MAX);
            let finite: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
            let mut pipe = redis::pipe();
            pipe.atomic();
            if !finite.is_empty() {
                pipe.rpush(&key, &finite).ignore();
            }
            pipe.ltrim(&key, -capacity, -1).ignore();
            pipe.lrange(&key, 0, -1);
            if scope.is_tenant() {
                pipe.zadd(self.key("windows", "tenants"), &name, unix_millis())
                    .ignore();
            }
            let mut conn = self.conn.clone();
            let (window,): (Vec<String>,) = self
                .run(
                    "windows_merge",
                    async move { pipe.query_async(&mut conn).await },
                )
                .await
                .map_err(store_error)?;
            if scope.is_tenant() {
                // The merge itself succeeded; a failed eviction is counted
                // and retried at the next merge.
                let _ = self.evict_tenant_windows(limits.max_tenant_windows).await;
            }
            Ok(parse_scores(window))
        })
    }

    fn get<'a>(&'a self, scope: &'a ScopeKey) -> StoreFuture<'a, Vec<f64>> {
        Box::pin(async move {
            let key = self.key("window", &scope.to_string());
            let mut conn = self.conn.clone();
            let window: Vec<String> = self
                .run("windows_get", async move {
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                })
                .await
                .map_err(store_error)?;
            Ok(parse_scores(window))
        })
    }
}

impl ArmStore for RedisState {
    fn get<'a>(&'a self, keys: &'a [ArmKey]) -> StoreFuture<'a, Vec<ArmStats>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("HMGET")
                    .arg(self.key("arm", &key.to_string()))
                    .arg("n")
                    .arg("sum");
            }
            let mut conn = self.conn.clone();
            let rows: Vec<(Option<u64>, Option<f64>)> = self
                .run("arms_get", async move { pipe.query_async(&mut conn).await })
                .await
                .map_err(store_error)?;
            Ok(rows
                .into_iter()
                .map(|(n, sum)| ArmStats {
                    n: n.unwrap_or(0),
                    reward_sum: sum.filter(|s| s.is_finite()).unwrap_or(0.0).max(0.0),
                })
                .collect())
        })
    }

    fn add<'a>(&'a self, key: &'a ArmKey, reward: f64) -> StoreFuture<'a, ArmStats> {
        Box::pin(async move {
            let reward = if reward.is_finite() {
                reward.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let arm = self.key("arm", &key.to_string());
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hincr(&arm, "n", 1_u64)
                .hincr(&arm, "sum", reward);
            let mut conn = self.conn.clone();
            let (n, reward_sum): (u64, f64) = self
                .run("arms_add", async move { pipe.query_async(&mut conn).await })
                .await
                .map_err(store_error)?;
            Ok(ArmStats { n, reward_sum })
        })
    }
}
