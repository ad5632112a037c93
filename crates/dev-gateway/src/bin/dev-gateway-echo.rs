//! A tiny function process for trying and testing the gateway. It behaves like
//! a fleet function behind of-watchdog: listens on the port of `upstream_url`,
//! answers `GET /_/health`, and exits 0 on SIGTERM.
//!
//! Routes:
//! - `GET /_/health`: 200 `OK` (503 until `ECHO_HEALTH_DELAY_MS` has passed).
//! - `/_/env`: the process environment as a JSON object.
//! - `/_/secrets`: `{name: content}` of the files in `SECRETS_DIR`.
//! - `/_/stream`: a chunked body: `first\n`, then (once `/_/release` was called)
//!   `second\n` and `third\n`.
//! - `/_/release`: lets waiting `/_/stream` responses continue.
//! - `/_/crash`: exits with status 3 without answering.
//! - anything else: `{method, path, query, headers, body, pid}` as JSON.
//!
//! Environment: `ECHO_TERM_FILE` (write `SIGTERM` there when the signal
//! arrives), `ECHO_IGNORE_SIGTERM=1` (keep running on SIGTERM),
//! `ECHO_HEALTH_DELAY_MS`, `ECHO_EXIT_AT_START=<code>` (exit before listening).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type EchoBody = BoxBody<Bytes, Infallible>;

struct Echo {
    started: Instant,
    health_delay: Duration,
    released: watch::Sender<bool>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if let Ok(code) = std::env::var("ECHO_EXIT_AT_START") {
        std::process::exit(code.parse().unwrap_or(1));
    }
    let upstream = std::env::var("upstream_url").map_err(|_| "upstream_url is not set")?;
    let addr: SocketAddr = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("upstream_url {upstream:?}: {e}"))?;
    let listener = TcpListener::bind(addr).await?;
    let health_delay = std::env::var("ECHO_HEALTH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default();
    let echo = Arc::new(Echo {
        started: Instant::now(),
        health_delay,
        released: watch::channel(false).0,
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let ignore_sigterm = std::env::var("ECHO_IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let echo = Arc::clone(&echo);
                let service = service_fn(move |request| {
                    let echo = Arc::clone(&echo);
                    async move { Ok::<_, Infallible>(handle(&echo, request).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = terminate.recv() => {
                if let Ok(path) = std::env::var("ECHO_TERM_FILE") {
                    std::fs::write(path, if ignore_sigterm { "SIGTERM ignored" } else { "SIGTERM" })?;
                }
                if !ignore_sigterm {
                    return Ok(());
                }
            }
        }
    }
}

async fn handle(echo: &Echo, request: Request<Incoming>) -> Response<EchoBody> {
    match request.uri().path() {
        "/_/health" if echo.started.elapsed() >= echo.health_delay => text(StatusCode::OK, "OK"),
        "/_/health" => text(StatusCode::SERVICE_UNAVAILABLE, "starting"),
        "/_/env" => json(&serde_json::json!(
            std::env::vars().collect::<BTreeMap<_, _>>()
        )),
        "/_/secrets" => json(&serde_json::json!(read_secrets())),
        "/_/crash" => std::process::exit(3),
        "/_/release" => {
            echo.released.send_replace(true);
            text(StatusCode::OK, "released")
        }
        "/_/stream" => stream(echo.released.subscribe()),
        _ => echo_request(request).await,
    }
}

async fn echo_request(request: Request<Incoming>) -> Response<EchoBody> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    json(&serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "pid": std::process::id(),
    }))
}

fn stream(mut released: watch::Receiver<bool>) -> Response<EchoBody> {
    let (chunks, receiver) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        if chunks.send(Bytes::from_static(b"first\n")).await.is_err() {
            return;
        }
        if released.wait_for(|r| *r).await.is_err() {
            return;
        }
        for chunk in [&b"second\n"[..], b"third\n"] {
            if chunks.send(Bytes::from_static(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(ChannelBody(receiver).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A body whose chunks are sent on a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn read_secrets() -> BTreeMap<String, String> {
    let Ok(dir) = std::env::var("SECRETS_DIR") else {
        return BTreeMap::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let content = std::fs::read_to_string(entry.path()).ok()?;
            Some((name, content))
        })
        .collect()
}

fn text(status: StatusCode, body: &str) -> Response<EchoBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *response.status_mut() = status;
    response
}

fn json(value: &serde_json::Value) -> Response<EchoBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
