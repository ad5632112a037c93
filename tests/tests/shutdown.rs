//! SIGTERM to a real function process: it keeps serving through the grace
//! period with `/_/health` at 503, finishes in-flight requests, then exits 0.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use provider_emulator::{Credentials, Emulator, EmulatorConfig, LatencyModel, ProviderFlavor};
use serde_json::json;
use tokio::time::Instant;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_serving_through_the_grace_then_drains_and_exits_zero() {
    // A slow provider keeps the first request in flight across the signal.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (credentials, secrets) = Credentials::generate(ProviderFlavor::Groq, &root, 3).unwrap();
    let groq = Emulator::start(
        listener,
        EmulatorConfig::instant(ProviderFlavor::Groq)
            .with_credentials(credentials)
            .with_latency(LatencyModel::fixed(1500.0, None)),
    )
    .await
    .unwrap();
    let secrets_dir = tempfile::tempdir().unwrap();
    for (name, value) in &secrets.0 {
        std::fs::write(secrets_dir.path().join(name), value).unwrap();
    }
    std::fs::write(secrets_dir.path().join("internal-token"), "shutdown-test").unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(fleet_tests::bin_dir().join("provider-proxy"))
        .env("upstream_url", &base)
        .env("GROQ_BASE_URL", groq.base_url())
        .env("SECRETS_DIR", secrets_dir.path())
        .env("healthcheck_interval", "2s")
        .env("write_timeout", "10s")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let http = http_client::client().expect("an HTTP client");
    let health = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let health_url = format!("{base}/_/health");
    wait_for(
        "the function to listen",
        Duration::from_secs(10),
        async || health(http.clone(), health_url.clone()).await == 200,
    )
    .await;

    let request = json!({
        "provider": "groq", "model": "llama-3.1-8b-instant", "task": "generate",
        "messages": [{"role": "user", "content": "hello"}]
    });
    let send = |http: reqwest::Client| {
        let url = format!("{base}/");
        let body = request.to_string();
        tokio::spawn(async move {
            http.post(url)
                .header("X-Fleet-Token", "shutdown-test")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let in_flight = send(http.clone());
    wait_for(
        "the provider to receive the request",
        Duration::from_secs(10),
        async || groq.stats().total_requests == 1,
    )
    .await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("health to turn 503", Duration::from_secs(5), async || {
        health(http.clone(), health_url.clone()).await == 503
    })
    .await;

    // Still serving during the grace period.
    let during_grace = send(http.clone());
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    assert_eq!(during_grace.await.unwrap().unwrap(), 200);

    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the function exits after draining")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(groq.stats().total_requests, 2);
    groq.shutdown().await;
}
