//! Routing, the runtime's endpoints, call ids, panics, streaming and initialisation.

use std::sync::atomic::Ordering;

use faas_runtime::{Error, REQUEST_DURATION_SECONDS, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL};
use http::StatusCode;
use prometheus::{IntCounter, Registry};
use tokio::sync::oneshot;

use crate::support::{
    TestHandler, TestServer, raw_exchange, request, small_config, until_in_flight, with_header,
};

#[tokio::test]
async fn any_path_and_method_reach_the_handler_with_the_raw_query_on_one_connection() {
    let (server, probe) = TestServer::ready(small_config()).await;
    let mut client = server.connect().await;
    let cases = [
        ("GET", "/"),
        ("POST", "/?stream=true"),
        ("POST", "/v1/chat/completions?model=a%2Fb&x=%20y&flag"),
        ("PUT", "/deep/nested/path/"),
        ("DELETE", "/items/42"),
        ("PATCH", "/items/42?fields=a,b"),
        ("OPTIONS", "/anything"),
        ("PURGE", "/cache"),
        // Near-misses of the runtime's own paths belong to the function.
        ("GET", "/_/health/"),
        ("GET", "/_/healthz"),
        ("GET", "/metrics/x"),
        ("POST", "/_/health"),
    ];
    for (method, uri) in cases {
        let reply = client.request(method, uri, "").await;
        if (method, uri) == ("POST", "/_/health") {
            // The runtime owns the path, as the watchdog does, and refuses other methods.
            assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{method} {uri}");
        let echoed = reply.json();
        assert_eq!(echoed["method"], method);
        assert_eq!(echoed["uri"], uri);
    }
    assert_eq!(probe.calls.load(Ordering::SeqCst), cases.len() - 1);
}

#[tokio::test]
async fn health_is_ok_and_ready_is_503_until_init_completes_while_requests_wait() {
    let (handler, _probe) = TestHandler::new("built by init");
    let (release_init, init_released) = oneshot::channel::<()>();
    let init = async move {
        init_released
            .await
            .map_err(|_| "init was dropped".to_owned())?;
        Ok(handler)
    };
    let registry = Registry::new();
    let server = TestServer::start(small_config(), registry.clone(), init).await;

    let mut probe_client = server.connect().await;
    let health = probe_client.get("/_/health").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "OK")
    );
    assert_eq!(
        probe_client.get("/_/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // A function request arriving now waits for init rather than failing.
    let mut waiting_client = server.connect().await;
    let waiting = tokio::spawn(async move { waiting_client.request("POST", "/early", "{}").await });
    until_in_flight(&registry, 1.0).await;
    // Health and readiness are still answered while it waits.
    assert_eq!(
        probe_client.get("/_/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(!waiting.is_finished());

    release_init.send(()).expect("init is waiting");
    let reply = waiting.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["greeting"], "built by init");
    assert_eq!(probe_client.get("/_/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_init_answers_waiting_requests_503_and_serve_returns_the_error() {
    let (fail_init, init_failure) = oneshot::channel::<()>();
    let init = async move {
        let _ = init_failure.await;
        Err::<TestHandler, _>("model file missing".to_owned())
    };
    let registry = Registry::new();
    let server = TestServer::start(small_config(), registry.clone(), init).await;
    let mut waiting_client = server.connect().await;
    let waiting = tokio::spawn(async move { waiting_client.request("POST", "/", "{}").await });
    until_in_flight(&registry, 1.0).await;

    fail_init.send(()).expect("init is waiting");
    let reply = waiting.await.expect("request task");
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"]["type"], "service_unavailable");
    match server.task.await.expect("serve task") {
        Err(Error::Init(message)) => assert_eq!(message, "model file missing"),
        other => panic!("expected Error::Init, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_init_is_an_init_error() {
    let init = async { panic!("init blew up") };
    let server: TestServer = TestServer::start(small_config(), Registry::new(), init).await;
    match server.task.await.expect("serve task") {
        Err(Error::Init(message)) => assert!(message.contains("init blew up"), "{message}"),
        other => panic!("expected Error::Init, got {other:?}"),
    }
}

#[tokio::test]
async fn metrics_expose_the_runtime_families_and_the_functions_own() {
    let registry = Registry::new();
    let own = IntCounter::new("embeddings_total", "Embeddings computed.").expect("counter");
    registry.register(Box::new(own.clone())).expect("register");
    own.inc_by(3);
    let (handler, _probe) = TestHandler::new("hello");
    let server = TestServer::start(small_config(), registry, async move { Ok(handler) }).await;

    let mut client = server.connect().await;
    assert_eq!(
        client.request("POST", "/", "{}").await.status,
        StatusCode::OK
    );
    let too_large = "x".repeat(65);
    assert_eq!(
        client.request("POST", "/", &too_large).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Runtime endpoints are not counted.
    assert_eq!(client.get("/_/health").await.status, StatusCode::OK);

    let reply = client.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let text = reply.text();
    for expected in [
        format!("# TYPE {REQUESTS_TOTAL} counter"),
        format!("# TYPE {REQUEST_DURATION_SECONDS} histogram"),
        format!("# TYPE {REQUESTS_IN_FLIGHT} gauge"),
        format!(r#"{REQUESTS_TOTAL}{{function="test-fn",method="POST",status_class="2xx"}} 1"#),
        format!(r#"{REQUESTS_TOTAL}{{function="test-fn",method="POST",status_class="4xx"}} 1"#),
        format!(r#"{REQUEST_DURATION_SECONDS}_count{{function="test-fn",method="POST"}} 2"#),
        format!(r#"{REQUESTS_IN_FLIGHT}{{function="test-fn"}} 0"#),
        "embeddings_total 3".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains(r#"method="GET""#),
        "runtime endpoints were counted:\n{text}"
    );
}

#[tokio::test]
async fn call_id_is_propagated_or_generated() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let mut client = server.connect().await;

    let given = client
        .send(with_header(
            request("POST", "/", "{}"),
            "x-call-id",
            "chain-123",
        ))
        .await
        .expect("request");
    // The caller knows its id; echoing it would double the header behind the
    // gateway, which answers with the id it generated.
    assert_eq!(given.header("x-call-id"), None);
    assert_eq!(given.json()["call_id"], "chain-123");

    let generated = client.get("/").await;
    let id = generated
        .header("x-call-id")
        .expect("a generated call id")
        .to_owned();
    let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(generated.json()["call_id"], id.as_str());

    let another = client.get("/").await;
    assert_ne!(another.header("x-call-id"), Some(id.as_str()));
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json_and_the_connection_keeps_working() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let mut client = server.connect().await;
    let reply = client
        .send(with_header(
            request("POST", "/panic", "{}"),
            "x-call-id",
            "doomed-1",
        ))
        .await
        .expect("a response, not a dropped connection");
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.header("x-call-id"), None);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "internal_error");
    assert_eq!(error["param"], serde_json::Value::Null);

    assert_eq!(client.get("/after").await.status, StatusCode::OK);
    let mut other = server.connect().await;
    assert_eq!(other.get("/other").await.status, StatusCode::OK);
}

#[tokio::test]
async fn streaming_bodies_are_sent_chunked() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let mut client = server.connect().await;
    let reply = client.get("/stream").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.text(), "data: one\n\ndata: two\n\n");
}

#[tokio::test]
async fn runtime_endpoints_carry_a_call_id_and_health_has_the_watchdog_body() {
    let (server, _probe) = TestServer::ready(small_config()).await;
    let reply = raw_exchange(server.addr, b"GET /_/health HTTP/1.1\r\nHost: fn\r\n\r\n").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "OK");
    assert!(reply.header("x-call-id").is_some());
}
