//! The functions the gateway knows and the state of their processes: scale from
//! zero on demand (one process however many requests race), idle scale to zero,
//! explicit scaling and shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::watch;

use crate::function_process::{FunctionProcess, LaunchSettings, ProbeClient, ProcessExit};
use crate::go_duration::format_go_duration;
use crate::secrets_mount::prepare_secrets_mount;
use crate::{Error, FunctionSpec};

/// Namespace reported for every function, as OpenFaaS CE uses.
pub const FUNCTION_NAMESPACE: &str = "openfaas-fn";

/// All functions, by name.
pub(crate) struct Registry {
    functions: BTreeMap<String, Arc<FunctionSlot>>,
    settings: RegistrySettings,
    probe_client: ProbeClient,
    /// Set at shutdown: no process may be started afterwards.
    closed: AtomicBool,
}

/// Settings shared by every function.
#[derive(Debug, Clone)]
pub(crate) struct RegistrySettings {
    pub launch: LaunchSettings,
    /// Grace between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// Root of the secrets folder; `None` leaves `SECRETS_DIR` unset.
    pub secrets_dir: Option<PathBuf>,
}

/// One function and its process, if any.
pub(crate) struct FunctionSlot {
    spec: FunctionSpec,
    /// Serialises start and stop: whoever holds it decides whether a process
    /// runs. Held across the cold start, so concurrent first requests queue here
    /// and all use the one process the first of them started.
    process: tokio::sync::Mutex<Option<FunctionProcess>>,
    /// What `/system/functions` reports and what the idle reaper reads; never
    /// held across an await.
    status: Mutex<SlotStatus>,
    invocations: AtomicU64,
}

#[derive(Debug)]
struct SlotStatus {
    phase: Phase,
    in_flight: usize,
    last_activity: Instant,
    last_cold_start: Option<Duration>,
}

#[derive(Debug)]
enum Phase {
    Stopped,
    Starting,
    Running {
        exit: watch::Receiver<Option<ProcessExit>>,
    },
}

/// Permission to send one request to a running process; keeps the function
/// counted as busy (not idle) until dropped, i.e. until the response body ends.
pub(crate) struct Lease {
    slot: Arc<FunctionSlot>,
    port: u16,
    exit: watch::Receiver<Option<ProcessExit>>,
}

/// A function as `GET /system/functions` reports it (faas-provider
/// `FunctionStatus`), plus `coldStartMs`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// Function name.
    pub name: String,
    /// Image from the stack (empty for in-memory specs).
    pub image: String,
    /// Always `openfaas-fn`.
    pub namespace: String,
    /// The command line the gateway runs.
    pub env_process: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Secret names the function may read.
    pub secrets: Vec<String>,
    /// 1 while a process is starting or running, else 0.
    pub replicas: u64,
    /// 1 once the running process has answered its health check, else 0.
    pub available_replicas: u64,
    /// Requests routed to the function since the gateway started.
    pub invocation_count: u64,
    /// Spawn-to-healthy time of the last start, in milliseconds.
    pub cold_start_ms: Option<u64>,
}

impl Registry {
    pub(crate) fn new(specs: Vec<FunctionSpec>, settings: RegistrySettings) -> Result<Self, Error> {
        let mut functions = BTreeMap::new();
        for spec in specs {
            if !crate::is_valid_function_name(&spec.name) {
                return Err(Error::InvalidFunction {
                    name: spec.name,
                    message: "names must match [-a-zA-Z_0-9.]+",
                });
            }
            let name = spec.name.clone();
            let slot = Arc::new(FunctionSlot {
                spec,
                process: tokio::sync::Mutex::new(None),
                status: Mutex::new(SlotStatus {
                    phase: Phase::Stopped,
                    in_flight: 0,
                    last_activity: Instant::now(),
                    last_cold_start: None,
                }),
                invocations: AtomicU64::new(0),
            });
            if functions.insert(name.clone(), slot).is_some() {
                return Err(Error::InvalidFunction {
                    name,
                    message: "declared twice",
                });
            }
        }
        let probe_client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new());
        Ok(Registry {
            functions,
            settings,
            probe_client,
            closed: AtomicBool::new(false),
        })
    }

    /// Looks a function up by name, accepting the `name.openfaas-fn` form.
    pub(crate) fn get(&self, name: &str) -> Result<&Arc<FunctionSlot>, Error> {
        self.functions
            .get(name)
            .or_else(|| {
                name.strip_suffix(FUNCTION_NAMESPACE)
                    .and_then(|n| n.strip_suffix('.'))
                    .and_then(|n| self.functions.get(n))
            })
            .ok_or_else(|| Error::UnknownFunction(name.to_owned()))
    }

    /// All functions.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<FunctionSlot>> {
        self.functions.values()
    }

    /// Counts an invocation and returns a lease on a healthy process, starting
    /// one first if none runs (scale from zero). A process found dead is
    /// replaced, as Kubernetes would restart a crashed pod.
    ///
    /// Runs in its own task so that a client hanging up during a cold start
    /// does not abort the start the queued requests are waiting for.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        slot: &Arc<FunctionSlot>,
    ) -> Result<Lease, Error> {
        slot.invocations.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::clone(self);
        let slot = Arc::clone(slot);
        tokio::spawn(async move { registry.acquire_in_task(&slot).await })
            .await
            .map_err(|e| Error::System(format!("start-up task failed: {e}")))?
    }

    async fn acquire_in_task(&self, slot: &Arc<FunctionSlot>) -> Result<Lease, Error> {
        let mut process = slot.process.lock().await;
        if let Some(running) = process.as_ref()
            && let Some(how) = running.exit()
        {
            tracing::warn!(
                function = %slot.spec.name,
                pid = running.pid(),
                exit = %how,
                "function process had exited; starting a new one"
            );
            *process = None;
            slot.set_phase(Phase::Stopped);
        }
        let running = match process.as_mut() {
            Some(running) => running,
            None => process.insert(self.cold_start(slot).await?),
        };
        Ok(slot.lease(running))
    }

    /// Starts the process and waits until it is healthy; the caller holds the
    /// slot's process lock.
    async fn cold_start(&self, slot: &FunctionSlot) -> Result<FunctionProcess, Error> {
        let spec = &slot.spec;
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        slot.set_phase(Phase::Starting);
        let result = self.spawn_and_probe(spec).await;
        match &result {
            Ok((running, cold_start)) => {
                let mut status = slot.lock_status();
                status.phase = Phase::Running {
                    exit: running.exit_watch(),
                };
                status.last_cold_start = Some(*cold_start);
                status.last_activity = Instant::now();
            }
            Err(error) => {
                tracing::error!(function = %spec.name, %error, "cold start failed");
                slot.set_phase(Phase::Stopped);
            }
        }
        result.map(|(running, _)| running)
    }

    async fn spawn_and_probe(
        &self,
        spec: &FunctionSpec,
    ) -> Result<(FunctionProcess, Duration), Error> {
        let secrets_mount = match &self.settings.secrets_dir {
            Some(dir) => Some(prepare_secrets_mount(dir, &spec.name, &spec.secrets)?),
            None => None,
        };
        let spawned_at = Instant::now();
        let running =
            FunctionProcess::spawn(spec, secrets_mount.as_deref(), &self.settings.launch)?;
        tracing::info!(
            function = %spec.name,
            pid = running.pid(),
            port = running.port(),
            "scaling from zero: process spawned, waiting for GET /_/health"
        );
        match running
            .wait_until_healthy(&self.probe_client, &self.settings.launch, spawned_at)
            .await
        {
            Ok(cold_start) => {
                tracing::info!(
                    function = %spec.name,
                    pid = running.pid(),
                    cold_start_ms = cold_start.as_millis() as u64,
                    "cold start: function ready in {cold_start:.1?}"
                );
                Ok((running, cold_start))
            }
            Err(error) => {
                running.stop(self.settings.stop_timeout).await;
                Err(error)
            }
        }
    }

    /// Scales a function to 0 (stop) or 1 (start and wait until healthy).
    /// Like [`Registry::acquire`], runs in its own task so a caller going away
    /// does not abort a start half-way.
    pub(crate) async fn scale(
        self: &Arc<Self>,
        slot: &Arc<FunctionSlot>,
        replicas: u64,
    ) -> Result<(), Error> {
        let registry = Arc::clone(self);
        let slot = Arc::clone(slot);
        tokio::spawn(async move { registry.scale_in_task(&slot, replicas).await })
            .await
            .map_err(|e| Error::System(format!("scaling task failed: {e}")))?
    }

    async fn scale_in_task(&self, slot: &Arc<FunctionSlot>, replicas: u64) -> Result<(), Error> {
        if replicas == 0 {
            self.stop(slot, "scaled to zero").await;
            return Ok(());
        }
        if replicas > 1 {
            tracing::info!(function = %slot.spec.name, replicas, "the local gateway runs one replica at most");
        }
        let mut process = slot.process.lock().await;
        if process.as_ref().is_some_and(|p| p.exit().is_none()) {
            return Ok(());
        }
        *process = Some(self.cold_start(slot).await?);
        Ok(())
    }

    /// Stops the function's process, if one runs.
    pub(crate) async fn stop(&self, slot: &FunctionSlot, reason: &str) {
        let mut process = slot.process.lock().await;
        if let Some(running) = process.take() {
            tracing::info!(function = %slot.spec.name, pid = running.pid(), reason, "stopping function");
            slot.set_phase(Phase::Stopped);
            running.stop(self.settings.stop_timeout).await;
        }
    }

    /// Refuses further starts, then stops every process concurrently.
    pub(crate) async fn stop_all(self: &Arc<Self>, reason: &'static str) {
        self.closed.store(true, Ordering::SeqCst);
        let mut tasks = tokio::task::JoinSet::new();
        for slot in self.functions.values() {
            let registry = Arc::clone(self);
            let slot = Arc::clone(slot);
            tasks.spawn(async move { registry.stop(&slot, reason).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Stops the function if it has been idle for its idle time. Does not wait
    /// for a start in progress (that start makes it busy anyway).
    pub(crate) async fn stop_if_idle(&self, slot: &FunctionSlot) {
        let Some(idle) = slot.spec.idle else { return };
        if !slot.is_idle_for(idle) {
            return;
        }
        let Ok(mut process) = slot.process.try_lock() else {
            return;
        };
        // Re-check under the process lock: no lease can be taken while we hold it.
        if process.is_none() || !slot.is_idle_for(idle) {
            return;
        }
        if let Some(running) = process.take() {
            tracing::info!(
                function = %slot.spec.name,
                pid = running.pid(),
                idle = %format_go_duration(idle),
                "scaling to zero after idle time"
            );
            slot.set_phase(Phase::Stopped);
            running.stop(self.settings.stop_timeout).await;
        }
    }
}

impl FunctionSlot {
    /// The function's spec.
    pub(crate) fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// The status reported by `/system/functions`.
    pub(crate) fn status(&self) -> FunctionStatus {
        let status = self.lock_status();
        let (replicas, available) = match &status.phase {
            Phase::Stopped => (0, 0),
            Phase::Starting => (1, 0),
            Phase::Running { exit } if exit.borrow().is_none() => (1, 1),
            Phase::Running { .. } => (0, 0),
        };
        let spec = &self.spec;
        let env_process = std::iter::once(spec.command.display().to_string())
            .chain(spec.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        FunctionStatus {
            name: spec.name.clone(),
            image: spec.image.clone(),
            namespace: FUNCTION_NAMESPACE.to_owned(),
            env_process,
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            secrets: spec.secrets.clone(),
            replicas,
            available_replicas: available,
            invocation_count: self.invocations.load(Ordering::Relaxed),
            cold_start_ms: status.last_cold_start.map(|d| d.as_millis() as u64),
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, SlotStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        self.lock_status().phase = phase;
    }

    fn is_idle_for(&self, idle: Duration) -> bool {
        let status = self.lock_status();
        status.in_flight == 0 && status.last_activity.elapsed() >= idle
    }

    fn lease(self: &Arc<Self>, running: &FunctionProcess) -> Lease {
        let mut status = self.lock_status();
        status.in_flight += 1;
        status.last_activity = Instant::now();
        Lease {
            slot: Arc::clone(self),
            port: running.port(),
            exit: running.exit_watch(),
        }
    }
}

impl Lease {
    /// Port of the process serving this request.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Name of the function.
    pub(crate) fn function(&self) -> &str {
        &self.slot.spec.name
    }

    /// Waits up to `budget` for the process to be seen exiting; used to tell a
    /// crash from a transient connection error.
    pub(crate) async fn exit_within(&self, budget: Duration) -> Option<ProcessExit> {
        let mut exit = self.exit.clone();
        match tokio::time::timeout(budget, exit.wait_for(Option::is_some)).await {
            Ok(Ok(how)) => how.clone(),
            _ => None,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut status = self.slot.lock_status();
        status.in_flight = status.in_flight.saturating_sub(1);
        status.last_activity = Instant::now();
    }
}
