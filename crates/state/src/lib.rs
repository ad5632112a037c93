//! The fleet's state that outlives one request: call records for feedback,
//! calibration score windows, the bandit's learned statistics and tenant
//! spend for budgets.
//!
//! One interface, two backends. The interfaces are routing-core's
//! ([`CallRecords`], [`ScoreWindows`], [`ArmStore`], [`BudgetStore`]); this
//! crate picks their
//! backend from the environment:
//!
//! - **in memory** (`STATE_URL` unset, the default): each replica keeps its
//!   own state, lost on restart (routing-core's `Memory*` stores);
//! - **Redis** (`STATE_URL=redis://host:port/db`): every replica shares one
//!   store that survives restarts and scale-to-zero ([`RedisState`]).
//!
//! A Redis store that cannot be reached fails each call quickly (connect
//! and command timeouts, then a short fail-fast pause before it tries
//! again) and counts the failure per operation; the caller degrades (routes
//! on static priors, skips learning) instead of failing the request.
#![forbid(unsafe_code)]

mod budgets;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use routing_core::calls::{CallRecords, MemoryCallRecords};
use routing_core::env::{DEFAULT_SECRETS_DIR, ENV_SECRETS_DIR, Env};
use routing_core::policy::{
    ArmStore, BudgetStore, BudgetTracker, MemoryArms, MemoryWindows, ScoreWindows,
};

pub use budgets::RedisBudgets;
pub use redis_store::RedisState;

/// `STATE_URL`: where shared state lives (`redis://host:port/db`,
/// `redis+unix:///path`); unset: in this process's memory.
pub const ENV_STATE_URL: &str = "STATE_URL";
/// `STATE_CONNECT_TIMEOUT_MS`: the most time one connection attempt takes.
pub const ENV_STATE_CONNECT_TIMEOUT_MS: &str = "STATE_CONNECT_TIMEOUT_MS";
/// `STATE_TIMEOUT_MS`: the most time one store call takes, round trip
/// included; past it the call fails and the caller degrades.
pub const ENV_STATE_TIMEOUT_MS: &str = "STATE_TIMEOUT_MS";
/// `STATE_KEY_PREFIX`: the prefix of every key written, so that several
/// deployments can share one Redis database.
pub const ENV_STATE_KEY_PREFIX: &str = "STATE_KEY_PREFIX";
/// The secret holding the Redis password (a file in `SECRETS_DIR`), when
/// the server asks for one. A password is never read from `STATE_URL`.
pub const STATE_PASSWORD_SECRET: &str = "state-password";
/// Default for [`ENV_STATE_CONNECT_TIMEOUT_MS`].
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default for [`ENV_STATE_TIMEOUT_MS`].
pub const DEFAULT_TIMEOUT_MS: u64 = 250;
/// Default for [`RedisConfig::fail_fast`].
pub const DEFAULT_FAIL_FAST: Duration = Duration::from_secs(1);
/// Default for [`ENV_STATE_KEY_PREFIX`].
pub const DEFAULT_KEY_PREFIX: &str = "llm-router:";

/// This crate's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The configuration is invalid.
    #[error("state store configuration: {0}")]
    Config(String),
    /// The store could not be reached or answered with an error.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this crate did not write.
    #[error("state store answered unexpectedly: {0}")]
    Corrupt(String),
}

/// Where a Redis store is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The server's URL (with no password in it).
    pub url: String,
    /// The password, from the [`STATE_PASSWORD_SECRET`] secret.
    pub password: Option<secrets::Secret>,
    /// The most time one connection attempt takes.
    pub connect_timeout: Duration,
    /// The most time one store call takes.
    pub timeout: Duration,
    /// The prefix of every key.
    pub key_prefix: String,
    /// After a connection failure, calls fail at once for this long
    /// instead of each waiting for a timeout, while the connection is
    /// re-established.
    pub fail_fast: Duration,
}

/// Which backend holds the state.
#[derive(Debug, Clone)]
pub enum Backend {
    /// This process's memory.
    Memory,
    /// A Redis server shared by every replica.
    Redis(RedisConfig),
}

impl Backend {
    /// The backend the environment asks for.
    pub fn from_env(env: &Env) -> Result<Self, StateError> {
        let Some(url) = env.get(ENV_STATE_URL).map(str::trim) else {
            return Ok(Backend::Memory);
        };
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !matches!(scheme, "redis" | "redis+unix" | "unix") {
            return Err(StateError::Config(format!(
                "{ENV_STATE_URL} must be a redis://host:port/db or redis+unix:///path URL \
                 (TLS is not supported), not {scheme:?}://…"
            )));
        }
        if url_password(url).is_some() {
            return Err(StateError::Config(format!(
                "{ENV_STATE_URL} must not carry a password: put it in the \
                 {STATE_PASSWORD_SECRET:?} secret"
            )));
        }
        let millis = |name: &str, default: u64| -> Result<Duration, StateError> {
            let ms: u64 = env
                .parse_or(name, default)
                .map_err(|e| StateError::Config(e.to_string()))?;
            if ms == 0 {
                return Err(StateError::Config(format!("{name} must be at least 1")));
            }
            Ok(Duration::from_millis(ms))
        };
        let secrets = secrets::SecretStore::new(env.get_or(ENV_SECRETS_DIR, DEFAULT_SECRETS_DIR));
        let password = secrets
            .read_optional(STATE_PASSWORD_SECRET)
            .map_err(|e| StateError::Config(e.to_string()))?;
        Ok(Backend::Redis(RedisConfig {
            url: url.to_owned(),
            password,
            connect_timeout: millis(ENV_STATE_CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS)?,
            timeout: millis(ENV_STATE_TIMEOUT_MS, DEFAULT_TIMEOUT_MS)?,
            key_prefix: env
                .get_or(ENV_STATE_KEY_PREFIX, DEFAULT_KEY_PREFIX)
                .to_owned(),
            fail_fast: DEFAULT_FAIL_FAST,
        }))
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}

/// The password part of `scheme://user:password@host`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// What the in-memory call records are bounded by (Redis expires records
/// by their time to live alone).
#[derive(Debug, Clone, Copy)]
pub struct CallRecordLimits {
    /// Records kept in memory, oldest evicted first.
    pub capacity: usize,
    /// How long a call accepts feedback.
    pub ttl: Duration,
}

/// What a shared store reports about itself.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// Failed store calls, by operation (label `op`).
    pub errors: prometheus::IntCounterVec,
    /// 1 while the last call reached the store, 0 after a connection
    /// failure (0 until a first call).
    pub up: prometheus::IntGauge,
}

/// The stores a router runs on, all from one backend.
#[derive(Clone)]
pub struct Stores {
    /// Call records for feedback.
    pub calls: Arc<dyn CallRecords>,
    /// Calibration score windows.
    pub windows: Arc<dyn ScoreWindows>,
    /// The bandit's learned statistics.
    pub arms: Arc<dyn ArmStore>,
    /// Tenant spend, for budgets.
    pub budgets: Arc<dyn BudgetStore>,
    /// The Redis store behind them, if that is the backend.
    pub redis: Option<Arc<RedisState>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Stores on `backend`. A Redis backend connects lazily: this does not
    /// wait for (or need) the server, and reports in `metrics`.
    pub fn open(
        backend: &Backend,
        calls: CallRecordLimits,
        metrics: StateMetrics,
    ) -> Result<Self, StateError> {
        match backend {
            Backend::Memory => Ok(Self {
                calls: Arc::new(MemoryCallRecords::new(calls.capacity, calls.ttl)),
                windows: Arc::new(MemoryWindows::new()),
                arms: Arc::new(MemoryArms::default()),
                budgets: Arc::new(BudgetTracker::new()),
                redis: None,
            }),
            Backend::Redis(config) => {
                let redis = Arc::new(RedisState::open(config, calls.ttl, metrics)?);
                Ok(Self {
                    calls: redis.clone(),
                    windows: redis.clone(),
                    arms: redis.clone(),
                    budgets: Arc::new(RedisBudgets::new(redis.clone())),
                    redis: Some(redis),
                })
            }
        }
    }

    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(pairs: &[(&str, &str)]) -> Result<Backend, StateError> {
        let mut pairs = pairs.to_vec();
        pairs.push((ENV_SECRETS_DIR, "/nonexistent-secrets"));
        Backend::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn unset_is_memory_and_a_url_is_redis() {
        assert!(matches!(backend(&[]), Ok(Backend::Memory)));
        assert!(matches!(
            backend(&[(ENV_STATE_URL, "")]),
            Ok(Backend::Memory)
        ));
        let Ok(Backend::Redis(config)) = backend(&[
            (ENV_STATE_URL, "redis://127.0.0.1:6379/2"),
            (ENV_STATE_TIMEOUT_MS, "40"),
        ]) else {
            panic!("a redis URL selects redis");
        };
        assert_eq!(config.url, "redis://127.0.0.1:6379/2");
        assert_eq!(config.timeout, Duration::from_millis(40));
        assert_eq!(
            config.connect_timeout,
            Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)
        );
        assert_eq!(config.key_prefix, DEFAULT_KEY_PREFIX);
        assert!(config.password.is_none());
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        for (pairs, needle) in [
            (vec![(ENV_STATE_URL, "rediss://h:1")], "TLS"),
            (vec![(ENV_STATE_URL, "http://h:1")], ENV_STATE_URL),
            (vec![(ENV_STATE_URL, "redis://:hunter2@h:1")], "secret"),
            (vec![(ENV_STATE_URL, "redis://u:hunter2@h:1/0")], "secret"),
            (
                vec![(ENV_STATE_URL, "redis://h:1"), (ENV_STATE_TIMEOUT_MS, "0")],
                ENV_STATE_TIMEOUT_MS,
            ),
            (
                vec![
                    (ENV_STATE_URL, "redis://h:1"),
                    (ENV_STATE_CONNECT_TIMEOUT_MS, "soon"),
                ],
                ENV_STATE_CONNECT_TIMEOUT_MS,
            ),
        ] {
            match backend(&pairs) {
                Err(StateError::Config(message)) => {
                    assert!(message.contains(needle), "{message}");
                    assert!(!message.contains("hunter2"), "{message}");
                }
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_user_without_a_password_is_allowed() {
        assert!(url_password("redis://acl-user@h:1/0").is_none());
        assert_eq!(url_password("redis://u:p@h:1/0"), Some("p"));
        assert!(url_password("redis://h:1/0?x=a@b").is_none());
    }
}
