//! Reloading the policy file on change, without a restart.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::live::LiveStats;
use super::{ENV_POLICY_PATH, ENV_POLICY_RELOAD_SECS, Policy, PolicyError, prices_from_env};
use crate::env::Env;
use crate::pricing::Catalogue;

/// How often the policy file is checked when `POLICY_RELOAD_SECS` is unset.
pub const DEFAULT_RELOAD_SECS: u64 = 5;

/// What one check of the policy file found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadOutcome {
    /// The content is the same as the policy in force (or there is no file).
    Unchanged,
    /// A new policy is in force.
    Reloaded,
    /// The new content is invalid; the old policy stays in force.
    Rejected(PolicyError),
    /// The file could not be read; the old policy stays in force.
    Unreadable(String),
}

#[derive(Debug)]
struct Shared {
    path: Option<PathBuf>,
    prices: Option<Catalogue>,
    env: Env,
    current: RwLock<Policy>,
    live: LiveStats,
    content_hash: Mutex<u64>,
    last_error: Mutex<Option<PolicyError>>,
}

/// The policy in force, reloaded from its file when the file changes.
///
/// Each check reads the file and compares a hash of its bytes with the
/// policy in force (so edits within one mtime tick are seen); a changed
/// file is parsed and validated in full and swapped in only when valid. A
/// bad edit is logged and the old policy kept. [`PolicyWatcher::current`] is
/// a cheap clone of the policy in force; [`PolicyWatcher::live_stats`] are
/// the live statistics configured by its `[live]` table, reconfigured when
/// a reload changes that table.
#[derive(Debug)]
pub struct PolicyWatcher {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl PolicyWatcher {
    /// Loads `path` (it must be valid now) and watches it; call
    /// [`PolicyWatcher::check_now`] or [`PolicyWatcher::poll_every`].
    pub fn new(path: &Path, prices: Catalogue, env: Env) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            origin: path.display().to_string(),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the policy file: {e}"),
        })?;
        let policy = Policy::parse_with_prices(&text, &path.display().to_string(), &prices)?
            .with_env_models(&env);
        Ok(Self {
            shared: Arc::new(Shared {
                path: Some(path.to_owned()),
                prices: Some(prices),
                env,
                live: LiveStats::new(policy.live_config()),
                current: RwLock::new(policy),
                content_hash: Mutex::new(hash(text.as_bytes())),
                last_error: Mutex::new(None),
            }),
            stop: None,
            thread: None,
        })
    }

    /// A policy that never changes (no file to watch).
    pub fn fixed(policy: Policy) -> Self {
        Self {
            shared: Arc::new(Shared {
                path: None,
                prices: None,
                env: Env::default(),
                live: LiveStats::new(policy.live_config()),
                current: RwLock::new(policy),
                content_hash: Mutex::new(0),
                last_error: Mutex::new(None),
            }),
            stop: None,
            thread: None,
        }
    }

    /// From the environment: `POLICY_PATH` (watched, checked every
    /// `POLICY_RELOAD_SECS`, default 5; 0 turns polling off), else the
    /// built-in policy. `PRICES_PATH` and the models' `model_env` variables
    /// (e.g. `LOCAL_CHAT_MODEL`) apply.
    pub fn from_env(env: &Env) -> Result<Self, PolicyError> {
        let prices = prices_from_env(env)?;
        match env.get(ENV_POLICY_PATH) {
            None => Ok(Self::fixed(
                Policy::builtin_with_prices(&prices)?.with_env_models(env),
            )),
            Some(path) => {
                let secs = env
                    .parse_or(ENV_POLICY_RELOAD_SECS, DEFAULT_RELOAD_SECS)
                    .map_err(|e| PolicyError {
                        origin: path.to_owned(),
                        line: None,
                        column: None,
                        field: None,
                        message: e.to_string(),
                    })?;
                let watcher = Self::new(Path::new(path), prices, env.clone())?;
                Ok(if secs == 0 {
                    watcher
                } else {
                    watcher.poll_every(Duration::from_secs(secs))
                })
            }
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Policy {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The live statistics (latency, breakers) for routing with this
    /// policy, configured by its `[live]` table and reconfigured by every
    /// reload that changes it. Clones share the same statistics.
    pub fn live_stats(&self) -> LiveStats {
        self.shared.live.clone()
    }

    /// The error of the last rejected edit, until a valid edit replaces it.
    pub fn last_error(&self) -> Option<PolicyError> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks the file once and swaps in a changed, valid policy.
    pub fn check_now(&self) -> ReloadOutcome {
        check(&self.shared)
    }

    /// Checks the file every `interval` on a background thread until the
    /// watcher is dropped.
    pub fn poll_every(mut self, interval: Duration) -> Self {
        if self.shared.path.is_none() || self.thread.is_some() {
            return self;
        }
        let (tx, rx) = mpsc::channel::<()>();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("policy-watcher".to_owned())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {
                            check(&shared);
                        }
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                self.stop = Some(tx);
                self.thread = Some(handle);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the policy watcher thread; the policy will not reload");
            }
        }
        self
    }
}

fn check(shared: &Shared) -> ReloadOutcome {
    let (Some(path), Some(prices)) = (&shared.path, &shared.prices) else {
        return ReloadOutcome::Unchanged;
    };
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(policy = %origin, error = %e, "policy file unreadable; keeping the policy in force");
            return ReloadOutcome::Unreadable(e.to_string());
        }
    };
    let new_hash = hash(text.as_bytes());
    let mut content_hash = shared
        .content_hash
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *content_hash == new_hash {
        return ReloadOutcome::Unchanged;
    }
    match Policy::parse_with_prices(&text, &origin, prices) {
        Ok(policy) => {
            let policy = policy.with_env_models(&shared.env);
            let live = policy.live_config();
            if live != shared.live.config() {
                shared.live.reconfigure(live);
                tracing::info!(policy = %origin, "[live] settings applied to the live statistics");
            }
            *shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner) = policy;
            *content_hash = new_hash;
            *shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            tracing::info!(policy = %origin, "policy reloaded");
            ReloadOutcome::Reloaded
        }
        Err(e) => {
            // Remember the bad content so it is reported once, not on
            // every poll; a later valid edit changes the hash again.
            *content_hash = new_hash;
            tracing::error!(policy = %origin, error = %e, "policy edit rejected; keeping the policy in force");
            *shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
            ReloadOutcome::Rejected(e)
        }
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
