//! The real OpenFaaS components as test fixtures: of-watchdog 0.11.6, the CE
//! gateway 0.27.14 and faas-cli 0.18.12, built from source by
//! `../shared/openfaas/build.sh` (`.ci/run` builds them into
//! `target/openfaas`).
//!
//! The binaries are looked up in `$OPENFAAS_BIN_DIR` (default
//! `target/openfaas`). Missing binaries fail the tests, unless
//! `OPENFAAS_BINARIES=unavailable` says so explicitly, which skips them.
//!
//! Fixed ports: the watchdog's metrics listen on 8081 and the gateway on 8080
//! and 8082, so one watchdog and one gateway at a time; [`exclusive`] holds
//! the lock every test of the real components takes.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::repo_root;

/// The environment variable naming the folder of `fwatchdog`, `gateway` and
/// `faas-cli`.
pub const BIN_DIR_ENV: &str = "OPENFAAS_BIN_DIR";
/// Set to `unavailable` to skip the tests of the real components.
pub const AVAILABILITY_ENV: &str = "OPENFAAS_BINARIES";

/// The port the CE gateway always listens on.
pub const GATEWAY_PORT: u16 = 8080;

/// The folder holding the real binaries; `None` only when
/// `OPENFAAS_BINARIES=unavailable` (the caller then skips). Panics when they
/// are missing otherwise.
pub fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(BIN_DIR_ENV)
        .map_or_else(|| repo_root().join("target/openfaas"), PathBuf::from);
    let missing: Vec<&str> = ["fwatchdog", "gateway", "faas-cli"]
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    if std::env::var(AVAILABILITY_ENV).is_ok_and(|v| v == "unavailable") {
        return None;
    }
    panic!(
        "{missing:?} missing from {}: run ../shared/openfaas/build.sh {} (or set {BIN_DIR_ENV}); \
         {AVAILABILITY_ENV}=unavailable skips these tests",
        dir.display(),
        dir.display()
    );
}

static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test of the real components at a time (fixed ports).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// The port the watchdog's metrics always listen on.
pub const WATCHDOG_METRICS_PORT: u16 = 8081;
/// The port the gateway's metrics always listen on.
pub const GATEWAY_METRICS_PORT: u16 = 8082;

/// Panics, naming the port, when something already listens on `port` (a
/// fixed port of the real components).
pub fn ensure_free(port: u16, what: &str) {
    let addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        panic!(
            "port {port} ({what}) is taken: stop what listens there, or run the tests in a \
             network namespace of their own (unshare -rn)"
        );
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 10 ms until it holds; panics after `deadline`.
pub async fn wait_for(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// GET `url`'s status, 0 when nothing answers.
pub async fn status_of(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// A function binary run by the real of-watchdog in `mode=http`.
pub struct Watchdog {
    /// The watchdog process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`: the watchdog.
    pub url: String,
    /// `http://127.0.0.1:<port>`: the function behind it.
    pub upstream: String,
    _tmp: tempfile::TempDir,
}

impl Watchdog {
    /// Starts `fwatchdog` running `function` (a path) with `env` (the
    /// function's and the watchdog's settings), and waits until the
    /// function answers its own `/_/health`.
    pub async fn start(bin_dir: &Path, function: &Path, env: &BTreeMap<String, String>) -> Self {
        ensure_free(WATCHDOG_METRICS_PORT, "of-watchdog's metrics");
        let port = free_port();
        let upstream_port = free_port();
        // The lock file (the watchdog's health) goes to TMPDIR.
        let tmp = tempfile::tempdir().expect("watchdog TMPDIR");
        let upstream = format!("http://127.0.0.1:{upstream_port}");
        let child = Command::new(bin_dir.join("fwatchdog"))
            .envs(env)
            .env("TMPDIR", tmp.path())
            .env("port", port.to_string())
            .env("mode", "http")
            .env("fprocess", function)
            .env("upstream_url", &upstream)
            .env("prefix_logs", "false")
            .env_remove("LISTEN_ADDR")
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("fwatchdog starts");
        let watchdog = Watchdog {
            child,
            url: format!("http://127.0.0.1:{port}"),
            upstream,
            _tmp: tmp,
        };
        let http = http_client::client().expect("an HTTP client");
        let (health, function_health) = (
            format!("{}/_/health", watchdog.url),
            format!("{}/_/health", watchdog.upstream),
        );
        wait_for(
            "the watchdog and its function to listen",
            Duration::from_secs(20),
            async || {
                status_of(&http, &health).await == 200
                    && status_of(&http, &function_health).await == 200
            },
        )
        .await;
        watchdog
    }

    /// Sends SIGTERM to the watchdog (which passes it on to the function).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("watchdog running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// A Prometheus that knows no series: the CE gateway queries one on
/// `GET /system/functions` (and panics when none answers).
pub struct FakePrometheus {
    /// Its port.
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl FakePrometheus {
    /// Starts it on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        FakePrometheus { port, task }
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real CE gateway on port 8080, forwarding to `provider_url`.
pub struct Gateway {
    /// The gateway process.
    pub child: Child,
    /// `http://127.0.0.1:8080`.
    pub url: String,
    _prometheus: FakePrometheus,
}

impl Gateway {
    /// Starts the gateway in front of the provider at `provider_url` and
    /// waits for `/healthz` (which it forwards to the provider).
    pub async fn start(bin_dir: &Path, provider_url: &str) -> Self {
        ensure_free(GATEWAY_PORT, "the CE gateway");
        ensure_free(GATEWAY_METRICS_PORT, "the CE gateway's metrics");
        let prometheus = FakePrometheus::start().await;
        let child = Command::new(bin_dir.join("gateway"))
            .env("functions_provider_url", provider_url)
            .env("faas_prometheus_host", "127.0.0.1")
            .env("faas_prometheus_port", prometheus.port.to_string())
            .env("read_timeout", "65s")
            .env("write_timeout", "65s")
            .env("upstream_timeout", "60s")
            .env("direct_functions", "false")
            .env("basic_auth", "false")
            .env("scale_from_zero", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the gateway starts");
        let gateway = Gateway {
            child,
            url: format!("http://127.0.0.1:{GATEWAY_PORT}"),
            _prometheus: prometheus,
        };
        let http = http_client::client().expect("an HTTP client");
        let healthz = format!("{}/healthz", gateway.url);
        wait_for(
            "the gateway on port 8080 (is another one running?)",
            Duration::from_secs(20),
            async || status_of(&http, &healthz).await == 200,
        )
        .await;
        gateway
    }
}

/// Arrival of server-sent events: when each event (up to its blank line)
/// had arrived, from the moment the request was sent.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// Milliseconds from sending to each event's arrival.
    pub at_ms: Vec<f64>,
    /// The events, in order (without their blank line).
    pub events: Vec<String>,
    /// The whole body.
    pub body: String,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Status.
    pub status: u16,
}

impl Arrivals {
    /// Reads `response` to its end, timing each event.
    pub async fn read(response: reqwest::Response, sent: Instant) -> Self {
        use futures_util::StreamExt;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut stream = response.bytes_stream();
        let mut body = String::new();
        let mut pending = String::new();
        let mut events = Vec::new();
        let mut at_ms = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("the stream reads");
            let now = sent.elapsed().as_secs_f64() * 1000.0;
            let text = String::from_utf8_lossy(&chunk);
            body.push_str(&text);
            pending.push_str(&text);
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                events.push(event.trim_end().to_owned());
                at_ms.push(now);
            }
        }
        Arrivals {
            at_ms,
            events,
            body,
            headers,
            status,
        }
    }

    /// Gaps between consecutive events, in milliseconds.
    pub fn gaps(&self) -> Vec<f64> {
        self.at_ms.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Groups of events that arrived within `window_ms` of the previous one.
    pub fn bursts(&self, window_ms: f64) -> usize {
        usize::from(!self.at_ms.is_empty()) + self.gaps().iter().filter(|g| **g > window_ms).count()
    }

    /// First and last event's arrival, first event's arrival and a summary.
    pub fn summary(&self) -> String {
        let mut gaps = self.gaps();
        gaps.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            gaps.get(((gaps.len().saturating_sub(1)) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        format!(
            "{} events, first at {:.0} ms, last at {:.0} ms, {} bursts (>20 ms apart), gap p50 {:.1} ms, max {:.1} ms",
            self.at_ms.len(),
            self.at_ms.first().copied().unwrap_or(0.0),
            self.at_ms.last().copied().unwrap_or(0.0),
            self.bursts(20.0),
            pick(0.5),
            pick(1.0)
        )
    }
}
