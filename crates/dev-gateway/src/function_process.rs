//! One running function process: spawned with its environment, supervised by a
//! task that owns the child (so signals never reach a reaped pid), health-checked
//! like the CE probe (`GET /_/health`), stopped with SIGTERM then SIGKILL.

use std::collections::BTreeMap;
use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::{Error, FunctionSpec};

/// Variables that choose a function's listen address besides `upstream_url`
/// (faas-runtime reads them first); not passed on from the gateway's environment.
const INHERITED_LISTEN_VARIABLES: [&str; 3] = ["LISTEN_ADDR", "PORT", "http_upstream_url"];

/// The watchdog's grace between SIGTERM and the drain, which functions read too.
const HEALTHCHECK_INTERVAL: &str = "healthcheck_interval";

/// Default grace for local processes. In a cluster the grace lets endpoints
/// update before the listener closes; the local gateway stops routing to a
/// process before signalling it, so no grace is needed and Ctrl-C stays quick.
/// A function's environment can set another value.
const LOCAL_HEALTHCHECK_INTERVAL: &str = "0";

/// Client used for health probes.
pub(crate) type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// How a process ended.
#[derive(Debug, Clone)]
pub(crate) enum ProcessExit {
    /// The OS reported an exit status (code or signal).
    Exited(ExitStatus),
    /// Waiting for the child failed; its state is unknown.
    WaitFailed(String),
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessExit::Exited(status) => write!(f, "{status}"),
            ProcessExit::WaitFailed(error) => write!(f, "waiting for it failed: {error}"),
        }
    }
}

/// What the owner asks the supervisor task to do.
#[derive(Debug, Clone, Copy)]
enum StopRequest {
    Terminate,
    Kill,
}

/// Where and how to start a process; the parts that are the same for every function.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSettings {
    /// `OPENFAAS_GATEWAY_URL` for the children.
    pub gateway_url: String,
    /// How long a process may take to answer `GET /_/health` with 200.
    pub startup_timeout: Duration,
    /// Pause between two health probes.
    pub health_poll_interval: Duration,
}

/// A spawned function process.
#[derive(Debug)]
pub(crate) struct FunctionProcess {
    function: String,
    pid: u32,
    port: u16,
    stop_requests: mpsc::UnboundedSender<StopRequest>,
    exit: watch::Receiver<Option<ProcessExit>>,
}

impl FunctionProcess {
    /// Spawns the function's command listening on a free loopback port.
    pub(crate) fn spawn(
        spec: &FunctionSpec,
        secrets_mount: Option<&std::path::Path>,
        settings: &LaunchSettings,
    ) -> Result<Self, Error> {
        let spawn_error = |source| Error::Spawn {
            function: spec.name.clone(),
            command: spec.command.clone(),
            source,
        };
        let port = free_loopback_port().map_err(spawn_error)?;
        let mut runtime_env: BTreeMap<&str, String> = BTreeMap::new();
        runtime_env.insert("upstream_url", format!("http://127.0.0.1:{port}"));
        runtime_env.insert("OPENFAAS_GATEWAY_URL", settings.gateway_url.clone());
        if let Some(mount) = secrets_mount {
            runtime_env.insert("SECRETS_DIR", mount.display().to_string());
        }
        let mut command = Command::new(&spec.command);
        // Inherited from the developer's shell, these would move the listener
        // away from `upstream_url`; the function's own environment may still set them.
        for variable in INHERITED_LISTEN_VARIABLES {
            command.env_remove(variable);
        }
        command
            .env(HEALTHCHECK_INTERVAL, LOCAL_HEALTHCHECK_INTERVAL)
            .args(&spec.args)
            .envs(&spec.env)
            .envs(&runtime_env)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            // Safety net: a child whose supervisor is dropped (runtime shut down) is killed.
            .kill_on_drop(true)
            // Own process group: Ctrl-C reaches only the gateway, which then stops
            // the children in order with SIGTERM.
            .process_group(0);
        let child = command.spawn().map_err(spawn_error)?;
        let pid = child
            .id()
            .ok_or_else(|| spawn_error(std::io::Error::other("the process exited at once")))?;
        let (stop_requests, stop_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(supervise(child, spec.name.clone(), pid, stop_rx, exit_tx));
        Ok(FunctionProcess {
            function: spec.name.clone(),
            pid,
            port,
            stop_requests,
            exit,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The loopback port the function listens on (`upstream_url`).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// A receiver that turns `Some` once the process has exited.
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<ProcessExit>> {
        self.exit.clone()
    }

    /// How the process ended, or `None` while it runs.
    pub(crate) fn exit(&self) -> Option<ProcessExit> {
        self.exit.borrow().clone()
    }

    /// Probes `GET /_/health` until it answers 200, the process exits, or the
    /// start-up budget runs out. Returns the time from `spawned_at` to healthy.
    pub(crate) async fn wait_until_healthy(
        &self,
        client: &ProbeClient,
        settings: &LaunchSettings,
        spawned_at: Instant,
    ) -> Result<Duration, Error> {
        let uri: http::Uri = format!("http://127.0.0.1:{}/_/health", self.port)
            .parse()
            .map_err(|e| Error::System(format!("health probe address: {e}")))?;
        let deadline = spawned_at + settings.startup_timeout;
        let mut exit = self.exit.clone();
        loop {
            if let Some(how) = self.exit() {
                return Err(Error::ExitedDuringStartup {
                    function: self.function.clone(),
                    exit: how.to_string(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::StartupTimeout {
                    function: self.function.clone(),
                    timeout: settings.startup_timeout,
                });
            }
            let probe_budget = (deadline - now).min(Duration::from_secs(2));
            if let Ok(Ok(response)) =
                tokio::time::timeout(probe_budget, client.get(uri.clone())).await
                && response.status() == http::StatusCode::OK
            {
                return Ok(spawned_at.elapsed());
            }
            // Wake early when the process exits so a crash is reported at once.
            let _ = tokio::time::timeout(
                settings.health_poll_interval,
                exit.wait_for(Option::is_some),
            )
            .await;
        }
    }

    /// Waits up to `budget` for the process to exit.
    pub(crate) async fn wait_for_exit(&self, budget: Duration) -> Option<ProcessExit> {
        let mut exit = self.exit.clone();
        match tokio::time::timeout(budget, exit.wait_for(Option::is_some)).await {
            Ok(Ok(how)) => how.clone(),
            // The supervisor is gone only after publishing the exit.
            Ok(Err(_)) => self.exit(),
            Err(_) => None,
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the process to exit, then kills it.
    pub(crate) async fn stop(self, grace: Duration) -> Option<ProcessExit> {
        if let Some(how) = self.exit() {
            return Some(how);
        }
        let _ = self.stop_requests.send(StopRequest::Terminate);
        if let Some(how) = self.wait_for_exit(grace).await {
            return Some(how);
        }
        tracing::warn!(
            function = %self.function,
            pid = self.pid,
            grace_ms = grace.as_millis() as u64,
            "function did not exit after SIGTERM; killing it"
        );
        let _ = self.stop_requests.send(StopRequest::Kill);
        self.wait_for_exit(Duration::from_secs(5)).await
    }
}

/// Owns the child: reaps it, forwards stop requests, publishes how it ended.
async fn supervise(
    mut child: Child,
    function: String,
    pid: u32,
    mut stop_requests: mpsc::UnboundedReceiver<StopRequest>,
    exit_tx: watch::Sender<Option<ProcessExit>>,
) {
    let mut stopping = false;
    let mut owner_alive = true;
    let outcome = loop {
        tokio::select! {
            status = child.wait() => break status,
            request = stop_requests.recv(), if owner_alive => match request {
                Some(StopRequest::Terminate) => {
                    stopping = true;
                    if let Err(e) = send_sigterm(pid) {
                        tracing::warn!(function, pid, error = %e, "cannot send SIGTERM; killing");
                        let _ = child.start_kill();
                    }
                }
                Some(StopRequest::Kill) => {
                    stopping = true;
                    let _ = child.start_kill();
                }
                None => {
                    // The owner dropped the handle without stopping the process.
                    owner_alive = false;
                    stopping = true;
                    let _ = child.start_kill();
                }
            },
        }
    };
    let how = match outcome {
        Ok(status) => ProcessExit::Exited(status),
        Err(e) => ProcessExit::WaitFailed(e.to_string()),
    };
    if stopping {
        tracing::info!(function, pid, exit = %how, "function process stopped");
    } else {
        tracing::warn!(function, pid, exit = %how, "function process exited on its own");
    }
    exit_tx.send_replace(Some(how));
}

fn send_sigterm(pid: u32) -> Result<(), String> {
    let pid = i32::try_from(pid).map_err(|e| e.to_string())?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| e.to_string())
}

/// Asks the OS for a free loopback port. The port is released before the child
/// binds it, so another program could take it in between; on loopback in a dev
/// setup that window is harmless, and the health probe would catch it.
fn free_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
