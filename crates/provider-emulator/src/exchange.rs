//! What the protocol modules and the server share: the emulator's state
//! ([`Shared`]), one provider request ([`Call`]) and what to do with it
//! ([`Reply`]), the response body ([`EmuBody`]) and response helpers.

use crate::config::EmulatorConfig;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::faults::{Fault, FaultPlan, FaultState, find_directive};
use crate::flavor::ProviderFlavor;
use crate::latency::LatencyModel;
use crate::stats::{Stats, StatsSnapshot};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::Frame;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Locks a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by every connection of one emulator.
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) root_url: String,
    faults: Mutex<FaultState>,
    stats: Mutex<Stats>,
    latency: Mutex<(LatencyModel, StdRng)>,
    ids: Mutex<StdRng>,
    /// Per-provider mutable state (issued tokens, prompt cache, ...).
    pub(crate) memory: Mutex<Memory>,
    shutdown: watch::Receiver<bool>,
    /// The number of provider requests received so far.
    received: watch::Sender<u64>,
}

/// What a provider remembers between requests.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Access tokens issued by the Vertex token endpoint, with their expiry (Unix seconds).
    pub(crate) access_tokens: HashMap<String, i64>,
    /// The last prompt per model (Ollama reports a cached prompt by omitting its count).
    pub(crate) last_prompt: HashMap<String, u64>,
    /// Models already "loaded" (Ollama reports `load_duration` once).
    pub(crate) loaded: HashMap<String, ()>,
    /// Tokens used in the current minute (minute since the epoch, tokens),
    /// for the remaining-tokens rate-limit headers.
    pub(crate) token_window: (i64, u64),
}

impl Shared {
    /// The state of a new emulator for `config`, serving at `root_url`,
    /// stopping when `shutdown` turns true.
    pub(crate) fn new(
        config: EmulatorConfig,
        root_url: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let seed = config.seed;
        Self {
            faults: Mutex::new(FaultState::new(&config.faults, seed)),
            stats: Mutex::new(Stats::new(config.record_limit)),
            latency: Mutex::new((config.latency, StdRng::seed_from_u64(seed ^ 0x6c61))),
            ids: Mutex::new(StdRng::seed_from_u64(seed ^ 0x6964)),
            memory: Mutex::new(Memory::default()),
            received: watch::Sender::new(0),
            config,
            root_url,
            shutdown,
        }
    }

    /// Resolves once the emulator is shutting down.
    pub(crate) async fn shutting_down(&self) {
        shutting_down(self.shutdown.clone()).await;
    }

    /// Records a provider request; returns its sequence number.
    pub(crate) fn record_request(&self, method: &str, path: &str, body: &[u8]) -> u64 {
        let seq = lock(&self.stats).record(method, path, body);
        self.received.send_replace(seq);
        seq
    }

    /// Notes the status the request numbered `seq` was answered with.
    pub(crate) fn note_status(&self, seq: u64, status: u16) {
        lock(&self.stats).note_status(seq, status);
    }

    pub(crate) fn flavor(&self) -> ProviderFlavor {
        self.config.flavor
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.config.credentials
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        lock(&self.stats).snapshot()
    }

    /// Resolves once at least `n` provider requests have been received.
    pub(crate) async fn wait_for_requests(&self, n: u64) {
        let mut rx = self.received.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    pub(crate) fn set_faults(&self, plan: &FaultPlan) {
        lock(&self.faults).set_plan(plan);
    }

    pub(crate) fn faults(&self) -> FaultPlan {
        lock(&self.faults).plan()
    }

    pub(crate) fn set_latency(&self, latency: LatencyModel) {
        lock(&self.latency).0 = latency;
    }

    /// Back to the state right after start: counters, bodies, faults and
    /// random sequences. Issued access tokens stay valid.
    pub(crate) fn reset(&self) {
        let seed = self.config.seed;
        lock(&self.stats).clear();
        self.received.send_replace(0);
        *lock(&self.faults) = FaultState::new(&self.config.faults, seed);
        *lock(&self.latency) = (self.config.latency, StdRng::seed_from_u64(seed ^ 0x6c61));
        *lock(&self.ids) = StdRng::seed_from_u64(seed ^ 0x6964);
        let mut memory = lock(&self.memory);
        memory.last_prompt.clear();
        memory.loaded.clear();
    }
}

/// Resolves once the emulator is shutting down.
pub(crate) async fn shutting_down(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: the emulator is down either way.
    let _ = rx.wait_for(|down| *down).await;
}

/// What a provider module decided to do with a request.
pub(crate) enum Reply {
    /// Send this response.
    Response(Box<Response<EmuBody>>),
    /// Never answer.
    Hang,
    /// Reset the connection without answering.
    Reset,
    /// Close the connection without answering (the emulator is shutting down).
    Drop,
}

impl From<Response<EmuBody>> for Reply {
    fn from(resp: Response<EmuBody>) -> Self {
        Reply::Response(Box::new(resp))
    }
}

/// One provider request, as the provider modules see it.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) seq: u64,
    pub(crate) shared: Arc<Shared>,
}

impl Call {
    pub(crate) fn flavor(&self) -> ProviderFlavor {
        self.shared.flavor()
    }

    /// A request header as text (`None` if absent or not visible ASCII).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The body parsed as JSON.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The fault this request gets: a directive in its body, else the plan.
    /// Recorded in the stats.
    pub(crate) fn fault(&self) -> Option<Fault> {
        let text = String::from_utf8_lossy(&self.body);
        let fault =
            find_directive(&text, self.flavor()).or_else(|| lock(&self.shared.faults).draw());
        if let Some(fault) = fault {
            lock(&self.shared.stats).note_fault(self.seq, fault);
        }
        fault
    }

    /// The sampling directives (confidence, instability) of this request.
    pub(crate) fn sampling(&self) -> crate::sampling::Sampling {
        crate::sampling::Sampling::from_body(&String::from_utf8_lossy(&self.body), self.flavor())
    }

    /// The latency model in force.
    pub(crate) fn latency(&self) -> LatencyModel {
        lock(&self.shared.latency).0
    }

    /// Draws a time to first token.
    pub(crate) fn ttft(&self) -> Duration {
        let mut guard = lock(&self.shared.latency);
        let (model, rng) = &mut *guard;
        model.ttft.sample(rng)
    }

    /// A request-unique alphanumeric id.
    pub(crate) fn id(&self, len: usize) -> String {
        crate::text::random_id(&mut *lock(&self.shared.ids), len)
    }

    /// A request-unique hex id.
    pub(crate) fn hex_id(&self, len: usize) -> String {
        crate::text::random_hex(&mut *lock(&self.shared.ids), len)
    }

    /// Runs `f` with the id generator (for seeded padding and the like).
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut lock(&self.shared.ids))
    }

    /// Waits, unless the emulator shuts down first (then `Err`).
    pub(crate) async fn sleep(&self, duration: Duration) -> Result<(), Error> {
        if duration.is_zero() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = shutting_down(self.shared.shutdown.clone()) => Err(Error::ConnectionDropped),
        }
    }

    /// Waits as long as a non-streamed answer of `output_tokens` takes;
    /// returns `Reply::Drop` if the emulator shuts down meanwhile.
    pub(crate) async fn wait_for_answer(&self, output_tokens: u64) -> Result<(), Reply> {
        let total = self.ttft() + self.latency().generation_time(output_tokens);
        self.sleep(total).await.map_err(|_| Reply::Drop)
    }

    /// A streamed body played from `script` with its delays, in a task
    /// that stops when the client goes away or the emulator shuts down.
    pub(crate) fn stream(&self, script: Script) -> EmuBody {
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            for (delay, chunk) in script.steps {
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutting_down(shutdown.clone()) => {
                            // The receiver may be gone already; nothing more to do then.
                            let _ = tx.send(Err(Error::ConnectionDropped)).await;
                            return;
                        }
                    }
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            if script.cut {
                let _ = tx.send(Err(Error::ConnectionDropped)).await;
            }
        });
        EmuBody::Stream(rx)
    }

    /// A script whose first chunk comes after a time-to-first-token draw
    /// and each later one after its tokens' generation time.
    pub(crate) fn script(&self, chunks: Vec<(u64, Bytes)>) -> Script {
        let latency = self.latency();
        let ttft = self.ttft();
        let steps = chunks
            .into_iter()
            .enumerate()
            .map(|(i, (tokens, bytes))| {
                let delay = if i == 0 {
                    ttft
                } else {
                    latency.generation_time(tokens)
                };
                (delay, bytes)
            })
            .collect();
        Script { steps, cut: false }
    }
}

/// The chunks of a streamed response and their delays.
pub(crate) struct Script {
    /// (delay before, bytes) pairs.
    pub(crate) steps: Vec<(Duration, Bytes)>,
    /// Whether the connection is cut after the last step instead of ending cleanly.
    pub(crate) cut: bool,
}

impl Script {
    /// Keeps the first half of the chunks (at least one) and cuts the connection there.
    pub(crate) fn cut_midway(mut self) -> Self {
        let keep = (self.steps.len() / 2).max(1);
        self.steps.truncate(keep);
        self.cut = true;
        self
    }
}

/// A response body: all at once, or streamed from a task.
pub enum EmuBody {
    /// The whole body.
    Full(Option<Bytes>),
    /// Chunks from a producer; an `Err` aborts the connection.
    Stream(mpsc::Receiver<Result<Bytes, Error>>),
}

impl EmuBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl http_body::Body for EmuBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|res| res.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => http_body::SizeHint::with_exact(0),
            Self::Stream(_) => http_body::SizeHint::default(),
        }
    }
}

/// A JSON response.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<EmuBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with_body(status, "application/json", body)
}

/// A plain-text response.
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<EmuBody> {
    with_body(
        status,
        "text/plain; charset=utf-8",
        text.as_bytes().to_vec(),
    )
}

/// A response with a content type and body.
pub(crate) fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<EmuBody> {
    let mut resp = Response::new(EmuBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A streamed response with a content type.
pub(crate) fn streaming(content_type: &'static str, body: EmuBody) -> Response<EmuBody> {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A 200 response whose body is cut after its first half.
pub(crate) fn cut_body(
    call: &Call,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<EmuBody> {
    let half = body.len() / 2;
    let script = Script {
        steps: vec![(Duration::ZERO, Bytes::from(body).slice(..half))],
        cut: true,
    };
    let mut resp = streaming(content_type, call.stream(script));
    // A length the body never reaches, as a real truncated transfer has.
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(half * 2 + 1));
    resp
}

/// Adds a header if the value is valid.
pub(crate) fn set_header(resp: &mut Response<EmuBody>, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().insert(n, v);
    }
}

/// Mangled JSON for the malformed-JSON fault: cut short and with a stray brace.
pub(crate) fn malformed(json_text: &[u8]) -> Vec<u8> {
    let mut out = json_text[..json_text.len() / 2].to_vec();
    out.extend_from_slice(b"}{\"");
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes `application/x-www-form-urlencoded` pairs.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let pairs = form_pairs(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=%2&y=1+2",
        );
        assert_eq!(
            pairs[0],
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()
            )
        );
        assert_eq!(pairs[1].1, "a.b.c");
        assert_eq!(pairs[2].1, "%2");
        assert_eq!(pairs[3].1, "1 2");
    }
}
