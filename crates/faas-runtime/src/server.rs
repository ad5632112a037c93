//! Binding, the accept loop, and the shutdown sequence of of-watchdog's contract: grace period with
//! health at 503, then a drain bounded by `write_timeout`.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Sleep;

use crate::Error;
use crate::config::RuntimeConfig;
use crate::dispatch::{Phase, Shared, dispatch, panic_message};
use crate::handler::Handler;
use crate::metrics::RuntimeMetrics;

/// How long to pause accepting after an error such as "too many open files".
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds the listening socket at `config.listen`.
///
/// Call it first, before any slow initialisation: the watchdog reports the function healthy as
/// soon as it starts, and forwards requests that fail with a 500 while nothing listens.
/// `TCP_NODELAY` is set on every accepted connection by [`serve`].
///
/// # Errors
/// [`Error::Bind`] when the address cannot be bound (in use, not local, no permission).
pub async fn bind(config: &RuntimeConfig) -> Result<TcpListener, Error> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves HTTP/1.1 (keep-alive) on `listener` until `shutdown` resolves, then shuts down the way
/// of-watchdog expects:
///
/// 1. keeps accepting and serving for `config.healthcheck_interval`, while `GET /_/health` (and
///    `/_/ready`) answer 503 so probes stop routing here;
/// 2. closes the listener and lets in-flight requests finish, for at most `config.write_timeout`
///    (idle keep-alive connections are closed at once; what is left after that is dropped);
/// 3. returns `Ok(())`.
///
/// `init` builds the handler and may be slow (model loading, secrets). Connections are accepted
/// while it runs; function requests wait for it, and `GET /_/ready` answers 503 until it is done.
/// `init` runs on the task that calls `serve`: do blocking work in `spawn_blocking`.
///
/// The runtime's metric families are registered into `registry`, which `GET /metrics` exposes.
///
/// # Errors
/// - [`Error::Metrics`] when the runtime's families cannot be registered in `registry`.
/// - [`Error::Init`] when `init` fails or panics (logged too). Requests waiting for it get a 503,
///   the listener is closed and the remaining connections drain first.
pub async fn serve<H, F, E>(
    listener: TcpListener,
    config: RuntimeConfig,
    registry: Registry,
    init: F,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error>
where
    F: Future<Output = Result<H, E>> + Send,
    H: Handler,
    E: Display,
{
    let metrics = RuntimeMetrics::register(&registry, &config.function_name)?;
    let (phase_tx, phase_rx) = watch::channel(Phase::Initialising);
    let shared = Arc::new(Shared {
        function_name: config.function_name.clone(),
        max_body_bytes: config.max_body_bytes,
        registry,
        metrics,
        phase: phase_rx,
        draining: AtomicBool::new(false),
        log_sample_ok_per_million: config.log_sample_ok_per_million,
        internal_token: config.internal_token.clone(),
    });
    match listener.local_addr() {
        Ok(addr) => tracing::info!(
            function = %config.function_name,
            listen = %addr,
            "serving; initialising the function"
        ),
        Err(err) => tracing::info!(
            function = %config.function_name,
            error = %err,
            "serving; initialising the function"
        ),
    }

    let mut init = Initialisation::new(init, phase_tx);
    let mut connections = Connections::new();
    let accepted = accept_until_stopped(
        listener,
        &config,
        &shared,
        &mut connections,
        &mut init,
        shutdown,
    )
    .await;
    shared.start_draining();
    let drained = drain(connections, config.write_timeout, &mut init).await;

    accepted.and(drained)?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Accepts and serves connections until the grace period after `shutdown` has elapsed, or `init`
/// has failed; then closes the listener.
async fn accept_until_stopped<H, F, E>(
    listener: TcpListener,
    config: &RuntimeConfig,
    shared: &Arc<Shared<H>>,
    connections: &mut Connections,
    init: &mut Initialisation<F, H>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    F: Future<Output = Result<H, E>>,
    H: Handler,
    E: Display,
{
    let mut shutdown = pin!(shutdown);
    let mut grace: Option<Pin<Box<Sleep>>> = None;
    loop {
        tokio::select! {
            // Ordered so that once the grace period is over no further connection is accepted.
            biased;
            initialised = init.finished() => initialised?,
            () = &mut shutdown, if grace.is_none() => {
                shared.start_draining();
                tracing::info!(
                    grace_ms = millis(config.healthcheck_interval),
                    "shutdown requested: /_/health answers 503, serving on during the grace period"
                );
                grace = Some(Box::pin(tokio::time::sleep(config.healthcheck_interval)));
            }
            () = elapsed(&mut grace) => return Ok(()),
            Some(joined) = connections.tasks.join_next() => {
                if let Err(err) = joined {
                    tracing::error!(error = %err, "a connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => connections.serve(stream, Arc::clone(shared)),
                Err(err) => accept_failed(&err).await,
            },
        }
    }
}

/// Lets in-flight requests finish, for at most `budget`, then drops what is left. `init` goes on
/// meanwhile, as requests may be waiting for it.
async fn drain<H, F, E>(
    connections: Connections,
    budget: Duration,
    init: &mut Initialisation<F, H>,
) -> Result<(), Error>
where
    F: Future<Output = Result<H, E>>,
    E: Display,
{
    tracing::info!(
        open_connections = connections.graceful.count(),
        drain_budget_ms = millis(budget),
        "listener closed; draining in-flight requests"
    );
    let Connections {
        graceful, tasks, ..
    } = connections;
    let mut drained = pin!(tokio::time::timeout(budget, graceful.shutdown()));
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            initialised = init.finished() => outcome = initialised,
            finished = &mut drained => {
                if finished.is_err() {
                    tracing::warn!(
                        "write_timeout reached with requests still in flight; closing their connections"
                    );
                }
                break;
            }
        }
    }
    // Dropping the set aborts whatever is still running.
    drop(tasks);
    outcome
}

/// The function's `init` future, polled beside the server until it has finished.
struct Initialisation<F, H> {
    future: Option<Pin<Box<CatchUnwind<AssertUnwindSafe<F>>>>>,
    phase: watch::Sender<Phase<H>>,
}

impl<F, H, E> Initialisation<F, H>
where
    F: Future<Output = Result<H, E>>,
    E: Display,
{
    fn new(init: F, phase: watch::Sender<Phase<H>>) -> Self {
        Self {
            future: Some(Box::pin(AssertUnwindSafe(init).catch_unwind())),
            phase,
        }
    }

    /// Resolves once `init` finishes, after publishing its outcome: `Err` (logged) if it failed or
    /// panicked. Never resolves again afterwards. Cancel-safe: the future is kept between calls.
    async fn finished(&mut self) -> Result<(), Error> {
        let Some(future) = self.future.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = future.await;
        self.future = None;
        let message = match outcome {
            Ok(Ok(handler)) => {
                self.phase.send_replace(Phase::Ready(Arc::new(handler)));
                tracing::info!("function initialised; ready");
                return Ok(());
            }
            Ok(Err(err)) => err.to_string(),
            Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
        };
        self.phase.send_replace(Phase::Failed);
        tracing::error!(error = %message, "function initialisation failed");
        Err(Error::Init(message))
    }
}

/// The server's open connections.
struct Connections {
    builder: http1::Builder,
    graceful: GracefulShutdown,
    tasks: JoinSet<()>,
}

impl Connections {
    fn new() -> Self {
        let mut builder = http1::Builder::new();
        builder.keep_alive(true);
        Self {
            builder,
            graceful: GracefulShutdown::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Serves one accepted connection on its own task.
    fn serve<H: Handler>(&mut self, stream: TcpStream, shared: Arc<Shared<H>>) {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let service = service_fn(move |req| dispatch(Arc::clone(&shared), req));
        let connection = self
            .graceful
            .watch(self.builder.serve_connection(TokioIo::new(stream), service));
        self.tasks.spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
}

/// Resolves when the grace period has started and elapsed.
async fn elapsed(grace: &mut Option<Pin<Box<Sleep>>>) {
    match grace {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind;
    match err.kind() {
        // The client gave up before the connection was accepted: nothing to do.
        ErrorKind::ConnectionAborted
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionRefused
        | ErrorKind::Interrupted => {
            tracing::debug!(error = %err, "connection lost before accept");
        }
        // Typically out of file descriptors: pause instead of spinning.
        _ => {
            tracing::error!(error = %err, "cannot accept connections");
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
