//! The HTTP server under every emulator: accept loop, per-connection
//! control (for resets), the admin endpoints and clean shutdown; it hands
//! each provider request to its protocol module as a [`Call`].

use crate::config::EmulatorConfig;
use crate::error::Error;
use crate::exchange::{Call, EmuBody, Reply, Shared, json, lock, plain};
use crate::faults::FaultPlan;
use crate::flavor::ProviderFlavor;
use crate::latency::LatencyModel;
use crate::{anthropic, bedrock, google, ollama, openai};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Largest request body read (bigger ones get a 413).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The admin path prefix; no provider uses it.
pub const ADMIN_PREFIX: &str = "/_emulator/";

/// Controls one TCP connection, so a request can reset it.
pub(crate) struct ConnControl {
    clone: Mutex<Option<std::net::TcpStream>>,
    kill: Notify,
}

impl ConnControl {
    /// Sets `SO_LINGER` to zero and drops the connection: the peer sees a
    /// TCP reset instead of a clean close.
    fn reset(&self) {
        if let Some(stream) = lock(&self.clone).take() {
            let socket = TcpSocket::from_std_stream(stream);
            if let Err(e) = socket.set_zero_linger() {
                tracing::debug!("could not set SO_LINGER: {e}");
            }
        }
        self.kill.notify_one();
    }
}

/// A running server.
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) fn start(listener: TcpListener, config: EmulatorConfig) -> Result<Self, Error> {
        config.faults.validate()?;
        let addr = listener.local_addr()?;
        let root_url = format!("http://{addr}");
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared::new(config, root_url, shutdown));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            shared,
            addr,
            shutdown_tx,
            task,
        })
    }

    pub(crate) async fn shutdown(self) {
        // Only fails when every receiver is gone, which means all is down already.
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!("emulator accept loop ended abnormally: {e}");
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutting_down();
    tokio::pin!(shutdown);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    conns.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    // Out of file descriptors and similar: back off briefly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (stream, clone) = match split_stream(stream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!("could not prepare connection: {e}");
            return;
        }
    };
    let ctl = Arc::new(ConnControl {
        clone: Mutex::new(Some(clone)),
        kill: Notify::new(),
    });
    let service = {
        let shared = Arc::clone(&shared);
        let ctl = Arc::clone(&ctl);
        service_fn(move |req| handle(Arc::clone(&shared), Arc::clone(&ctl), req))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => log_conn_end(res),
        () = ctl.kill.notified() => {}
        () = shared.shutting_down() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => log_conn_end(res),
                () = ctl.kill.notified() => {}
            }
        }
    }
}

fn log_conn_end(res: Result<(), hyper::Error>) {
    if let Err(e) = res {
        tracing::debug!("connection ended: {e}");
    }
}

/// Keeps a second handle on the socket so a reset can set `SO_LINGER`.
fn split_stream(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let clone = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, clone))
}

async fn handle(
    shared: Arc<Shared>,
    ctl: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Response<EmuBody>, Error> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
    };
    if let Some(admin) = path.strip_prefix(ADMIN_PREFIX) {
        return Ok(admin_route(&shared, &parts.method, admin, &body));
    }
    let seq = shared.record_request(parts.method.as_str(), &path, &body);
    let call = Call {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        seq,
        shared: Arc::clone(&shared),
    };
    let reply = match shared.flavor() {
        ProviderFlavor::Ollama => ollama::handle(&call).await,
        ProviderFlavor::Anthropic => anthropic::handle(&call).await,
        ProviderFlavor::Vertex | ProviderFlavor::Gemini => google::handle(&call).await,
        ProviderFlavor::Bedrock => bedrock::handle(&call).await,
        _ => openai::handle(&call).await,
    };
    match reply {
        Reply::Response(resp) => {
            shared.note_status(seq, resp.status().as_u16());
            Ok(*resp)
        }
        Reply::Hang => {
            shared.shutting_down().await;
            Err(Error::ConnectionDropped)
        }
        Reply::Reset => {
            ctl.reset();
            Err(Error::ConnectionDropped)
        }
        Reply::Drop => Err(Error::ConnectionDropped),
    }
}

fn admin_route(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response<EmuBody> {
    match (method, path) {
        (&Method::GET, "stats") => {
            let mut snap = shared.snapshot();
            snap.recent.clear();
            json(StatusCode::OK, &snap)
        }
        (&Method::GET, "requests") => json(StatusCode::OK, &shared.snapshot().recent),
        (&Method::POST, "reset") => {
            shared.reset();
            json(StatusCode::OK, &serde_json::json!({"reset": true}))
        }
        (&Method::GET, "faults") => json(StatusCode::OK, &shared.faults()),
        (&Method::PUT, "faults") => match serde_json::from_slice::<FaultPlan>(body)
            .map_err(Error::from)
            .and_then(|plan| plan.validate().map(|()| plan))
        {
            Ok(plan) => {
                shared.set_faults(&plan);
                json(StatusCode::OK, &plan)
            }
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": e.to_string()}),
            ),
        },
        (&Method::PUT, "latency") => match serde_json::from_slice::<LatencyModel>(body) {
            Ok(latency) => {
                shared.set_latency(latency);
                json(StatusCode::OK, &latency)
            }
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": e.to_string()}),
            ),
        },
        (&Method::GET, "info") => json(
            StatusCode::OK,
            &serde_json::json!({
                "flavor": shared.flavor(),
                "base_url": format!("{}{}", shared.root_url, shared.flavor().base_path()),
                "root_url": shared.root_url,
            }),
        ),
        _ => plain(StatusCode::NOT_FOUND, "unknown emulator admin endpoint"),
    }
}
