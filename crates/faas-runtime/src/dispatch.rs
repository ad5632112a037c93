//! What happens to one request: the runtime's own endpoints, or the body limit, the wait for
//! initialisation and the function's handler (with panics turned into 500s).

use std::any::Any;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use prometheus::Registry;
use tokio::sync::watch;
use tracing::Instrument;

use crate::body::{Body, BoxError};
use crate::call_id::{self, CALL_ID_HEADER};
use crate::handler::{Handler, RequestContext};
use crate::metrics::{self, RuntimeMetrics};
use crate::request_body::{self, BodyReadError};
use crate::response::{json_error, text_response};

/// Where the function's initialisation stands.
pub(crate) enum Phase<H> {
    /// `init` has not finished: requests wait, `/_/ready` answers 503.
    Initialising,
    /// The handler is built.
    Ready(Arc<H>),
    /// `init` failed: waiting requests get a 503 and the server stops.
    Failed,
}

/// State shared by every connection of one server.
pub(crate) struct Shared<H> {
    /// For the request span.
    pub(crate) function_name: String,
    /// Request body limit.
    pub(crate) max_body_bytes: usize,
    /// Exposed on `/metrics`.
    pub(crate) registry: Registry,
    /// The runtime's families inside `registry`.
    pub(crate) metrics: RuntimeMetrics,
    /// Where initialisation stands.
    pub(crate) phase: watch::Receiver<Phase<H>>,
    /// Set once shutdown began: health and readiness answer 503.
    pub(crate) draining: AtomicBool,
    /// Successful requests with an access line, per million.
    pub(crate) log_sample_ok_per_million: u32,
    /// The token function requests must carry, for an internal function.
    pub(crate) internal_token: Option<secrets::Secret>,
}

impl<H> Shared<H> {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Paths the runtime answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeRoute {
    Health,
    Ready,
    Metrics,
}

impl RuntimeRoute {
    fn recognise(path: &str) -> Option<Self> {
        match path {
            "/_/health" => Some(Self::Health),
            "/_/ready" => Some(Self::Ready),
            "/metrics" => Some(Self::Metrics),
            _ => None,
        }
    }
}

/// Answers one request; never fails (errors become JSON responses).
pub(crate) async fn dispatch<H, B>(
    shared: Arc<Shared<H>>,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    let received_at = Instant::now();
    // The caller (or the gateway, which also answers with the id it
    // generated) knows an incoming id: echoing it too would put X-Call-Id
    // twice on a response the gateway streams. Only a new id is echoed.
    let incoming = call_id::incoming(req.headers());
    let echo = incoming.is_none();
    let call_id = incoming.unwrap_or_else(call_id::generate);
    let mut response = match RuntimeRoute::recognise(req.uri().path()) {
        Some(route) => {
            let response = runtime_route(&shared, route, req.method());
            tracing::debug!(
                call_id = %call_id,
                path = req.uri().path(),
                status = response.status().as_u16(),
                "runtime endpoint"
            );
            response
        }
        None => function_request(&shared, req, call_id.clone(), received_at).await,
    };
    if echo && let Ok(value) = HeaderValue::from_str(&call_id) {
        response.headers_mut().insert(CALL_ID_HEADER, value);
    }
    Ok(response)
}

fn runtime_route<H>(shared: &Shared<H>, route: RuntimeRoute, method: &Method) -> Response<Body> {
    if method != Method::GET {
        // As the watchdog answers non-GET requests on its health endpoints.
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is allowed on this path",
            None,
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match route {
        RuntimeRoute::Health if shared.is_draining() => {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        RuntimeRoute::Health => text_response(StatusCode::OK, "OK"),
        RuntimeRoute::Ready => {
            let ready = matches!(*shared.phase.borrow(), Phase::Ready(_));
            if ready && !shared.is_draining() {
                text_response(StatusCode::OK, "OK")
            } else {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready")
            }
        }
        RuntimeRoute::Metrics => metrics::exposition(&shared.registry),
    }
}

/// A request for the function: measured, logged (never its body) and answered by the handler.
async fn function_request<H, B>(
    shared: &Shared<H>,
    req: Request<B>,
    call_id: String,
    received_at: Instant,
) -> Response<Body>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    let method = req.method().clone();
    // The access line's fields: the runtime's own, and those a handler
    // records with `access::record` (see crate::access).
    let span = tracing::info_span!(
        "request",
        function = %shared.function_name,
        call_id = %call_id,
        method = %method,
        path = req.uri().path(),
        tenant = tracing::field::Empty,
        task = tracing::field::Empty,
        rule = tracing::field::Empty,
        provider = tracing::field::Empty,
        model = tracing::field::Empty,
        input_tokens = tracing::field::Empty,
        output_tokens = tracing::field::Empty,
        cost_usd = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let sampled = crate::access::sampled(&call_id, shared.log_sample_ok_per_million);
    async {
        let _in_flight = shared.metrics.in_flight();
        let response = answer(shared, req, call_id, received_at).await;
        let elapsed = received_at.elapsed();
        shared.metrics.observe(&method, response.status(), elapsed);
        let status = response.status();
        if sampled || status.is_client_error() || status.is_server_error() {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "request completed"
            );
        }
        response
    }
    .instrument(span)
    .await
}

async fn answer<H, B>(
    shared: &Shared<H>,
    req: Request<B>,
    call_id: String,
    received_at: Instant,
) -> Response<Body>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    if let Some(token) = &shared.internal_token
        && !carries_token(req.headers(), token)
    {
        if request_body::worth_draining(req.headers()) {
            request_body::discard(req.into_body()).await;
        }
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &format!(
                "{} serves only the fleet's own functions: the {} header is missing or wrong",
                shared.function_name,
                secrets::INTERNAL_TOKEN_HEADER
            ),
            None,
        );
    }
    let limit = shared.max_body_bytes;
    if request_body::declared_too_large(req.headers(), limit) {
        tracing::warn!(limit, "declared request body length over the limit");
        if request_body::worth_draining(req.headers()) {
            request_body::discard(req.into_body()).await;
        }
        return too_large(limit);
    }
    let (parts, body) = req.into_parts();
    let body = match request_body::read_limited(body, limit).await {
        Ok(body) => body,
        Err(BodyReadError::TooLarge) => {
            tracing::warn!(limit, "request body over the limit");
            return too_large(limit);
        }
        Err(BodyReadError::Read(err)) => {
            tracing::warn!(error = %err, "cannot read the request body");
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "the request body could not be read",
                None,
            );
        }
    };

    let Some(handler) = ready_handler(&shared.phase).await else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the function failed to initialise",
            None,
        );
    };
    let cx = RequestContext {
        call_id,
        received_at,
    };
    call_handler(handler, Request::from_parts(parts, body), cx).await
}

/// Whether the request carries `token`, compared in constant time.
fn carries_token(headers: &http::HeaderMap, token: &secrets::Secret) -> bool {
    headers
        .get(secrets::INTERNAL_TOKEN_HEADER)
        .is_some_and(|sent| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                sent.as_bytes(),
                token.expose().as_bytes(),
            )
            .is_ok()
        })
}

fn too_large(limit: usize) -> Response<Body> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        &format!("the request body is larger than the limit of {limit} bytes"),
        None,
    )
}

/// Waits until initialisation has finished; `None` if it failed (or the server is gone).
async fn ready_handler<H>(phase: &watch::Receiver<Phase<H>>) -> Option<Arc<H>> {
    let mut phase = phase.clone();
    let current = phase
        .wait_for(|phase| !matches!(phase, Phase::Initialising))
        .await
        .ok()?;
    match &*current {
        Phase::Ready(handler) => Some(Arc::clone(handler)),
        Phase::Initialising | Phase::Failed => None,
    }
}

/// Runs the handler; a panic (while creating or polling its future) becomes a 500.
async fn call_handler<H: Handler>(
    handler: Arc<H>,
    req: Request<Bytes>,
    cx: RequestContext,
) -> Response<Body> {
    let outcome = AssertUnwindSafe(async move { handler.handle(req, cx).await })
        .catch_unwind()
        .await;
    match outcome {
        Ok(response) => response,
        Err(payload) => {
            tracing::error!(
                panic = panic_message(payload.as_ref()),
                "the handler panicked"
            );
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
                None,
            )
        }
    }
}

/// The text of a panic payload, when it is one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic payload that is not a string)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::full;
    use crate::handler::handler_fn;
    use http_body_util::{BodyExt, Full};

    fn shared<H>(phase: Phase<H>) -> (Arc<Shared<H>>, watch::Sender<Phase<H>>) {
        let registry = Registry::new();
        let metrics = RuntimeMetrics::register(&registry, "test-fn").expect("registers");
        let (tx, rx) = watch::channel(phase);
        let shared = Arc::new(Shared {
            function_name: "test-fn".to_owned(),
            max_body_bytes: 8,
            registry,
            metrics,
            phase: rx,
            draining: AtomicBool::new(false),
            log_sample_ok_per_million: 1_000_000,
            internal_token: None,
        });
        (shared, tx)
    }

    fn request(method: &str, uri: &str, body: &'static str) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid request")
    }

    async fn send<H: Handler>(
        shared: &Arc<Shared<H>>,
        req: Request<Full<Bytes>>,
    ) -> (StatusCode, String) {
        let Ok(response) = dispatch(Arc::clone(shared), req).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("full body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn echo() -> impl Handler {
        handler_fn(|req: Request<Bytes>, _cx: RequestContext| async move {
            Response::new(full(format!("{} {}", req.method(), req.uri())))
        })
    }

    #[tokio::test]
    async fn an_internal_function_answers_only_requests_with_the_token() {
        let registry = Registry::new();
        let metrics = RuntimeMetrics::register(&registry, "test-fn").expect("registers");
        let (_tx, rx) = watch::channel(Phase::Ready(Arc::new(echo())));
        let shared = Arc::new(Shared {
            function_name: "test-fn".to_owned(),
            max_body_bytes: 8,
            registry,
            metrics,
            phase: rx,
            draining: AtomicBool::new(false),
            log_sample_ok_per_million: 1_000_000,
            internal_token: Some(secrets::Secret::new("right-token")),
        });
        let with = |token: &str| {
            let mut req = request("POST", "/", "{}");
            req.headers_mut().insert(
                secrets::INTERNAL_TOKEN_HEADER,
                http::HeaderValue::from_str(token).expect("header"),
            );
            req
        };
        let (status, body) = send(&shared, request("POST", "/", "{}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("X-Fleet-Token"), "{body}");
        assert!(!body.contains("right-token"), "{body}");
        for wrong in ["wrong-token", "right-toke", "right-token-", ""] {
            assert_eq!(
                send(&shared, with(wrong)).await.0,
                StatusCode::UNAUTHORIZED,
                "{wrong:?}"
            );
        }
        assert_eq!(
            send(&shared, with("right-token")).await,
            (StatusCode::OK, "POST /".to_owned())
        );
        // The runtime's own routes stay open: probes and scrapes carry no token.
        assert_eq!(
            send(&shared, request("GET", "/_/health", "")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(&shared, request("GET", "/metrics", "")).await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn health_answers_ok_then_503_while_draining() {
        let (shared, _tx) = shared(Phase::Ready(Arc::new(echo())));
        assert_eq!(
            send(&shared, request("GET", "/_/health", "")).await,
            (StatusCode::OK, "OK".to_owned())
        );
        shared.start_draining();
        assert_eq!(
            send(&shared, request("GET", "/_/health", "")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn ready_follows_the_phase_and_draining() {
        let (shared, tx) = shared(Phase::Initialising);
        assert_eq!(
            send(&shared, request("GET", "/_/ready", "")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tx.send_replace(Phase::Ready(Arc::new(echo())));
        assert_eq!(
            send(&shared, request("GET", "/_/ready", "")).await.0,
            StatusCode::OK
        );
        shared.start_draining();
        assert_eq!(
            send(&shared, request("GET", "/_/ready", "")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn runtime_endpoints_refuse_other_methods() {
        let (shared, _tx) = shared(Phase::Ready(Arc::new(echo())));
        for path in ["/_/health", "/_/ready", "/metrics"] {
            let Ok(response) = dispatch(Arc::clone(&shared), request("POST", path, "")).await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(response.headers()[ALLOW], "GET", "{path}");
        }
    }

    #[tokio::test]
    async fn other_paths_reach_the_handler_with_the_query() {
        let (shared, _tx) = shared(Phase::Ready(Arc::new(echo())));
        assert_eq!(
            send(&shared, request("DELETE", "/_/healthz/x?a=%20b&c", "")).await,
            (StatusCode::OK, "DELETE /_/healthz/x?a=%20b&c".to_owned())
        );
    }

    #[tokio::test]
    async fn failed_initialisation_answers_503() {
        struct NeverBuilt;
        impl Handler for NeverBuilt {
            async fn handle(&self, _req: Request<Bytes>, _cx: RequestContext) -> Response<Body> {
                Response::new(full("never called"))
            }
        }
        let (shared, _tx) = shared::<NeverBuilt>(Phase::Failed);
        let (status, body) = send(&shared, request("POST", "/", "{}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("service_unavailable"), "{body}");
    }

    #[tokio::test]
    async fn body_over_the_limit_answers_413_before_the_handler() {
        let (shared, _tx) = shared(Phase::Ready(Arc::new(echo())));
        let (status, body) = send(&shared, request("POST", "/", "123456789")).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("request_too_large"), "{body}");
    }

    #[tokio::test]
    async fn a_panic_while_creating_the_future_is_caught_too() {
        struct PanicsEagerly;
        impl Handler for PanicsEagerly {
            #[expect(
                unreachable_code,
                reason = "the panic must come before the future exists"
            )]
            fn handle(
                &self,
                _req: Request<Bytes>,
                _cx: RequestContext,
            ) -> impl Future<Output = Response<Body>> + Send {
                panic!("eager panic");
                async { Response::new(full("unreachable")) }
            }
        }
        let (shared, _tx) = shared(Phase::Ready(Arc::new(PanicsEagerly)));
        let (status, body) = send(&shared, request("GET", "/", "")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("internal_error"), "{body}");
    }

    #[test]
    fn panic_messages() {
        let from_str: Box<dyn Any + Send> = Box::new("static text");
        let from_string: Box<dyn Any + Send> = Box::new(String::from("owned text"));
        let other: Box<dyn Any + Send> = Box::new(42_u8);
        assert_eq!(panic_message(from_str.as_ref()), "static text");
        assert_eq!(panic_message(from_string.as_ref()), "owned text");
        assert!(panic_message(other.as_ref()).contains("not a string"));
    }
}
