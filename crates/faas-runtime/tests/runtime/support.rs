//! A test handler, a server started on 127.0.0.1:0, and two clients: hyper's, and raw bytes for
//! exact control over the wire (chunked bodies, `Expect`, lying lengths).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use faas_runtime::{Body, Error, Handler, RequestContext, RuntimeConfig, json_response, streaming};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus::Registry;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// A config listening on an ephemeral loopback port.
pub(crate) fn config(
    max_body_bytes: usize,
    grace: Duration,
    write_timeout: Duration,
) -> RuntimeConfig {
    RuntimeConfig {
        function_name: "test-fn".to_owned(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_body_bytes,
        healthcheck_interval: grace,
        write_timeout,
        log_sample_ok_per_million: 1_000_000,
        internal_token: None,
    }
}

/// The default test config: 64-byte bodies, 10 s grace, 30 s drain.
pub(crate) fn small_config() -> RuntimeConfig {
    config(64, Duration::from_secs(10), Duration::from_secs(30))
}

/// What the test can observe of and do to the handler.
pub(crate) struct Probe {
    /// How many requests reached the handler.
    pub(crate) calls: Arc<AtomicUsize>,
    /// Receives one message each time a request enters `/wait`.
    pub(crate) entered: mpsc::UnboundedReceiver<()>,
    /// Lets one waiting `/wait` request finish per `notify_one`.
    pub(crate) release: Arc<Notify>,
}

/// The handler under test:
/// - `/wait`: announces itself on `entered`, then waits for `release`;
/// - `/panic`: panics;
/// - `/stream`: answers a streaming body in two chunks;
/// - anything else: echoes the request as JSON.
pub(crate) struct TestHandler {
    greeting: String,
    calls: Arc<AtomicUsize>,
    entered: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

impl TestHandler {
    /// A handler and its probe; `greeting` shows that `init` built it.
    pub(crate) fn new(greeting: &str) -> (Self, Probe) {
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (entered_tx, entered_rx) = mpsc::unbounded_channel();
        let handler = Self {
            greeting: greeting.to_owned(),
            calls: Arc::clone(&calls),
            entered: entered_tx,
            release: Arc::clone(&release),
        };
        let probe = Probe {
            calls,
            entered: entered_rx,
            release,
        };
        (handler, probe)
    }
}

impl Handler for TestHandler {
    async fn handle(&self, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match req.uri().path() {
            "/panic" => panic!("the test handler panics on purpose"),
            "/wait" => {
                let _ = self.entered.send(());
                self.release.notified().await;
                json_response(StatusCode::OK, &json!({"waited": true}))
            }
            "/stream" => {
                let chunks = futures_util::stream::iter([
                    Ok::<_, std::io::Error>(Bytes::from_static(b"data: one\n\n")),
                    Ok(Bytes::from_static(b"data: two\n\n")),
                ]);
                let mut response = Response::new(streaming(chunks));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                response
            }
            _ => json_response(
                StatusCode::OK,
                &json!({
                    "greeting": self.greeting,
                    "method": req.method().as_str(),
                    "uri": req.uri().to_string(),
                    "body": String::from_utf8_lossy(req.body()),
                    "body_len": req.body().len(),
                    "call_id": cx.call_id,
                }),
            ),
        }
    }
}

/// A running server.
pub(crate) struct TestServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    shutdown_seen: Option<oneshot::Receiver<()>>,
    /// `serve`'s outcome.
    pub(crate) task: JoinHandle<Result<(), Error>>,
}

impl TestServer {
    /// Binds `config.listen` and serves in a task, building the handler with `init`.
    pub(crate) async fn start<F>(config: RuntimeConfig, registry: Registry, init: F) -> Self
    where
        F: Future<Output = Result<TestHandler, String>> + Send + 'static,
    {
        let listener = faas_runtime::bind(&config).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (seen_tx, seen_rx) = oneshot::channel();
        // Resolves when the test asks; then tells the test that serve has taken the signal
        // (serve reacts in the same poll, before any other request is handled).
        let shutdown = async move {
            let _ = shutdown_rx.await;
            let _ = seen_tx.send(());
        };
        let task = tokio::spawn(faas_runtime::serve(
            listener, config, registry, init, shutdown,
        ));
        Self {
            addr,
            shutdown: Some(shutdown_tx),
            shutdown_seen: Some(seen_rx),
            task,
        }
    }

    /// A server whose handler is ready at once.
    pub(crate) async fn ready(config: RuntimeConfig) -> (Self, Probe) {
        let (handler, probe) = TestHandler::new("hello");
        let server = Self::start(config, Registry::new(), async move { Ok(handler) }).await;
        (server, probe)
    }

    /// Triggers the shutdown and waits until serve has taken it.
    pub(crate) async fn shut_down(&mut self) {
        if let Some(trigger) = self.shutdown.take() {
            trigger.send(()).expect("serve is running");
        }
        if let Some(seen) = self.shutdown_seen.take() {
            seen.await.expect("serve took the shutdown signal");
        }
    }

    /// A new keep-alive connection to the server.
    pub(crate) async fn connect(&self) -> Client {
        Client::connect(self.addr).await.expect("connect")
    }
}

/// The runtime's in-flight gauge, as `registry` reports it.
pub(crate) fn in_flight(registry: &Registry) -> f64 {
    registry
        .gather()
        .iter()
        .find(|family| family.name() == faas_runtime::REQUESTS_IN_FLIGHT)
        .and_then(|family| family.get_metric().first())
        .map_or(0.0, |metric| metric.get_gauge().get_value())
}

/// Waits (yielding to the server's tasks, never sleeping) until `count` requests are inside
/// the runtime.
pub(crate) async fn until_in_flight(registry: &Registry, count: f64) {
    while in_flight(registry) < count {
        tokio::task::yield_now().await;
    }
}

/// A response, fully read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.body))
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 keep-alive connection through hyper's client.
pub(crate) struct Client {
    sender: SendRequest<Full<Bytes>>,
    connection: JoinHandle<Result<(), hyper::Error>>,
}

impl Client {
    /// Connects and handshakes.
    pub(crate) async fn connect(
        addr: SocketAddr,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        Ok(Self {
            sender,
            connection: tokio::spawn(connection),
        })
    }

    /// Sends a request on this connection and reads the whole response.
    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends `method uri` with `body`.
    pub(crate) async fn request(&mut self, method: &str, uri: &str, body: &str) -> Reply {
        self.send(request(method, uri, body))
            .await
            .unwrap_or_else(|err| panic!("{method} {uri}: {err}"))
    }

    /// Sends `GET uri`.
    pub(crate) async fn get(&mut self, uri: &str) -> Reply {
        self.request("GET", uri, "").await
    }

    /// Resolves once the server has closed this (idle) connection.
    pub(crate) async fn closed(self) {
        let Self { sender, connection } = self;
        drop(sender);
        connection
            .await
            .expect("client connection task")
            .expect("connection closed cleanly");
    }
}

/// A request with a body.
pub(crate) fn request(method: &str, uri: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("valid request")
}

/// Adds a header to a request.
pub(crate) fn with_header(
    mut req: Request<Full<Bytes>>,
    name: &'static str,
    value: &'static str,
) -> Request<Full<Bytes>> {
    req.headers_mut().insert(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    );
    req
}

/// Writes `request` verbatim on a new connection and reads the first response.
pub(crate) async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    read_reply(&mut stream).await
}

/// Reads one response: its head, then a `Content-Length` body.
pub(crate) async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(index) = find(&buffer, b"\r\n\r\n") {
            break index;
        }
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await.expect("read the response");
        assert!(
            read > 0,
            "connection closed before a response head: {buffer:?}"
        );
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    let length: usize = headers
        .get(http::header::CONTENT_LENGTH)
        .map_or(0, |v| v.to_str().expect("ASCII").parse().expect("a number"));
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await.expect("read the body");
        assert!(read > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..read]);
    }
    body.truncate(length);
    Reply {
        status: StatusCode::from_u16(code).expect("status code"),
        headers,
        body: Bytes::from(body),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Keeps a paused clock from auto-advancing while held, so that time moves only through
/// `tokio::time::advance`: tokio never auto-advances while a blocking task runs, and this one
/// runs until the holder is dropped. Without it, the paused clock jumps to the next timer
/// whenever the runtime finds nothing ready to run, and bytes still in transit between two
/// sockets count as nothing ready: a grace period could end in the middle of a test.
pub(crate) struct FrozenClock {
    _release: std::sync::mpsc::Sender<()>,
}

impl FrozenClock {
    /// Freezes the (already paused) clock.
    pub(crate) fn hold() -> Self {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        // Returns when the sender is dropped.
        drop(tokio::task::spawn_blocking(move || wait.recv().is_err()));
        Self { _release: release }
    }
}
