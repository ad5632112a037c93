//! The gateway server: configuration, start-up, request routing, background
//! tasks (idle reaper, `scale.min` starts) and graceful shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::forwarding::{CallHeaders, parse_function_route};
use crate::function_process::LaunchSettings;
use crate::proxy::{GatewayBody, ProxyClient, forward, proxy_client};
use crate::registry::{FunctionSlot, FunctionStatus, Registry, RegistrySettings};
use crate::system_api::{self, error_response, text};
use crate::{Error, FunctionSpec};

/// How long shutdown waits for open client connections after the functions stopped.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);

/// Configuration of a local gateway; [`DevGateway::start`] runs it.
#[derive(Debug, Clone)]
pub struct DevGateway {
    /// Address to listen on; port 0 picks a free port (see [`RunningGateway::addr`]).
    pub listen: SocketAddr,
    /// The functions to serve.
    pub functions: Vec<FunctionSpec>,
    /// Folder with one file per secret; each process gets `SECRETS_DIR` pointing
    /// at `<secrets_dir>/.mounts/<function>/` holding only its own secrets.
    /// `None` leaves `SECRETS_DIR` unset.
    pub secrets_dir: Option<PathBuf>,
    /// How long a process may take to answer `GET /_/health` with 200 before the
    /// waiting request gets 503.
    pub startup_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL when stopping a process.
    pub stop_timeout: Duration,
    /// Pause between two health probes during a cold start.
    pub health_poll_interval: Duration,
}

/// A gateway that is serving; stop it with [`RunningGateway::shutdown`].
/// Dropping it without shutdown leaves cleanup to the runtime: when the Tokio
/// runtime ends, child processes are killed.
pub struct RunningGateway {
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop_signal: watch::Sender<bool>,
    server: JoinHandle<GracefulShutdown>,
}

struct AppState {
    registry: Arc<Registry>,
    client: ProxyClient,
}

impl DevGateway {
    /// A gateway on `127.0.0.1:0` for `functions`, without secrets, with a 30 s
    /// start-up timeout, a 10 s stop grace and 20 ms health polling.
    pub fn new(functions: Vec<FunctionSpec>) -> Self {
        DevGateway {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            functions,
            secrets_dir: None,
            startup_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            health_poll_interval: Duration::from_millis(20),
        }
    }

    /// Binds the listen address, starts the `scale.min` functions in the
    /// background and serves until [`RunningGateway::shutdown`].
    pub async fn start(self) -> Result<RunningGateway, Error> {
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.listen,
            source,
        })?;
        let settings = RegistrySettings {
            launch: LaunchSettings {
                gateway_url: gateway_url(addr),
                startup_timeout: self.startup_timeout,
                health_poll_interval: self.health_poll_interval,
            },
            stop_timeout: self.stop_timeout,
            secrets_dir: self.secrets_dir,
        };
        let registry = Arc::new(Registry::new(self.functions, settings)?);
        let (stop_signal, stopped) = watch::channel(false);
        for slot in registry.slots() {
            if let Some(idle) = slot.spec().idle {
                tokio::spawn(reap_when_idle(
                    Arc::clone(&registry),
                    Arc::clone(slot),
                    idle,
                    stopped.clone(),
                ));
            }
            if slot.spec().min_replicas > 0 {
                let registry = Arc::clone(&registry);
                let slot = Arc::clone(slot);
                tokio::spawn(async move {
                    if let Err(error) = registry.scale(&slot, 1).await {
                        tracing::error!(function = %slot.spec().name, %error, "cannot start scale.min replica");
                    }
                });
            }
        }
        let state = Arc::new(AppState {
            registry: Arc::clone(&registry),
            client: proxy_client(),
        });
        let server = tokio::spawn(accept_loop(listener, state, stopped));
        tracing::info!(%addr, functions = registry.slots().count(), "dev-gateway listening on http://{addr}");
        Ok(RunningGateway {
            addr,
            registry,
            stop_signal,
            server,
        })
    }
}

impl RunningGateway {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080` (what children get
    /// as `OPENFAAS_GATEWAY_URL`).
    pub fn url(&self) -> String {
        gateway_url(self.addr)
    }

    /// The functions as `GET /system/functions` reports them.
    pub fn functions(&self) -> Vec<FunctionStatus> {
        self.registry.slots().map(|slot| slot.status()).collect()
    }

    /// Stops accepting connections, stops every function process (SIGTERM, then
    /// SIGKILL after the stop timeout), then waits briefly for open connections.
    pub async fn shutdown(self) -> Result<(), Error> {
        tracing::info!("dev-gateway shutting down");
        self.stop_signal.send_replace(true);
        let connections = self
            .server
            .await
            .map_err(|e| Error::System(format!("gateway task failed: {e}")))?;
        self.registry.stop_all("gateway shutting down").await;
        if tokio::time::timeout(CONNECTION_DRAIN, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("closing client connections that were still open");
        }
        Ok(())
    }
}

/// `http://<addr>` with an unspecified address replaced by loopback, so the
/// URL is something children can connect to.
fn gateway_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    mut stopped: watch::Receiver<bool>,
) -> GracefulShutdown {
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_requested(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let service = service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(route(&state, peer, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "client connection ended with an error");
            }
        });
    }
    connections
}

async fn route(
    state: &AppState,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<GatewayBody> {
    let uri = request.uri().clone();
    if let Some(route) = parse_function_route(uri.path(), uri.query()) {
        return invoke(state, peer, request, route.name, &route.upstream).await;
    }
    let method = request.method().clone();
    match system_api::handle(&state.registry, &method, uri.path(), request.into_body()).await {
        Some(response) => response,
        None => text(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// `/function/<name>/...`: find the function, scale it from zero if needed,
/// forward, and add the call headers to whatever comes back.
async fn invoke(
    state: &AppState,
    peer: SocketAddr,
    request: Request<Incoming>,
    name: &str,
    upstream: &str,
) -> Response<GatewayBody> {
    let started = Instant::now();
    let call = CallHeaders::for_request(request.headers(), SystemTime::now());
    let method = request.method().clone();
    let result = match state.registry.get(name) {
        Ok(slot) => forward_to(state, slot, request, upstream, &call, peer.ip()).await,
        Err(error) => Err(error),
    };
    let response = result.unwrap_or_else(|error| {
        let mut response = error_response(&error);
        call.apply_to_gateway_response(response.headers_mut());
        response
    });
    tracing::debug!(
        function = name,
        %method,
        path = upstream,
        status = response.status().as_u16(),
        ms_to_headers = started.elapsed().as_millis() as u64,
        "invoke"
    );
    response
}

async fn forward_to(
    state: &AppState,
    slot: &Arc<FunctionSlot>,
    request: Request<Incoming>,
    upstream: &str,
    call: &CallHeaders,
    client_ip: IpAddr,
) -> Result<Response<GatewayBody>, Error> {
    let lease = state.registry.acquire(slot).await?;
    forward(&state.client, lease, request, upstream, call, client_ip).await
}

/// Resolves once shutdown has been requested (or the gateway handle is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Checks a function for idleness a few times per idle period until shutdown.
async fn reap_when_idle(
    registry: Arc<Registry>,
    slot: Arc<FunctionSlot>,
    idle: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let period = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => registry.stop_if_idle(&slot).await,
            () = stop_requested(&mut stopped) => break,
        }
    }
}
