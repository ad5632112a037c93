//! The watchdog's shutdown sequence: grace period with health at 503, then a bounded drain.
//!
//! The clock is paused and frozen (see `FrozenClock`), so the grace period and the drain budget
//! end exactly when the test advances time.

use std::time::Duration;

use http::StatusCode;

use crate::support::{Client, FrozenClock, TestServer, config};

const GRACE: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn serves_through_the_grace_period_then_drains_the_in_flight_request() {
    let _frozen = FrozenClock::hold();
    let (mut server, mut probe) = TestServer::ready(config(64, GRACE, WRITE_TIMEOUT)).await;

    let mut in_flight_client = server.connect().await;
    let in_flight = tokio::spawn(async move { in_flight_client.get("/wait").await });
    probe
        .entered
        .recv()
        .await
        .expect("the request reached the handler");

    server.shut_down().await;

    // During the grace period: health and readiness say 503, new connections and requests are
    // still served.
    let mut late_client = server.connect().await;
    let health = late_client.get("/_/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        late_client.get("/_/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let late = late_client.request("POST", "/late", "{}").await;
    assert_eq!(late.status, StatusCode::OK);
    assert_eq!(late.json()["uri"], "/late");
    assert!(!in_flight.is_finished());

    // The grace period ends: the idle connection is closed, the listener too.
    tokio::time::advance(GRACE).await;
    late_client.closed().await;
    assert!(
        Client::connect(server.addr).await.is_err(),
        "connection accepted after the grace period"
    );

    // The in-flight request still completes, and only then does serve return.
    assert!(!server.task.is_finished());
    probe.release.notify_one();
    let reply = in_flight.await.expect("in-flight task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["waited"], true);
    server
        .task
        .await
        .expect("serve task")
        .expect("serve returns Ok after a graceful shutdown");
}

#[tokio::test(start_paused = true)]
async fn the_drain_is_bounded_by_write_timeout() {
    let _frozen = FrozenClock::hold();
    let (mut server, mut probe) = TestServer::ready(config(64, GRACE, WRITE_TIMEOUT)).await;

    let mut stuck_client = server.connect().await;
    let stuck = tokio::spawn(async move {
        stuck_client
            .send(crate::support::request("GET", "/wait", ""))
            .await
    });
    probe
        .entered
        .recv()
        .await
        .expect("the request reached the handler");
    let mut idle_client = server.connect().await;
    assert_eq!(idle_client.get("/").await.status, StatusCode::OK);

    server.shut_down().await;
    tokio::time::advance(GRACE).await;
    // The drain has begun once the idle connection is closed.
    idle_client.closed().await;

    tokio::time::advance(WRITE_TIMEOUT).await;
    server
        .task
        .await
        .expect("serve task")
        .expect("serve returns Ok even when requests outlive the drain budget");
    // The request that never finished lost its connection.
    assert!(stuck.await.expect("stuck task").is_err());
}

#[tokio::test(start_paused = true)]
async fn without_a_grace_period_the_drain_starts_at_once() {
    let _frozen = FrozenClock::hold();
    let (mut server, _probe) = TestServer::ready(config(64, Duration::ZERO, WRITE_TIMEOUT)).await;
    let mut idle_client = server.connect().await;
    assert_eq!(idle_client.get("/").await.status, StatusCode::OK);

    server.shut_down().await;
    idle_client.closed().await;
    server
        .task
        .await
        .expect("serve task")
        .expect("serve returns Ok");
}
