//! Load benchmark of the whole fleet on loopback: the same chat request sent
//! straight to the Groq emulator (the baseline a caller pays without the
//! fleet), to provider-proxy through the gateway, and to llm-router through
//! the gateway, side by side in one run. Prints throughput and latency
//! percentiles, and each path's latency as a ratio of the baseline's.
//!
//! Bounded: a fixed number of requests per scenario, loopback only.
//!
//! cargo build --release --workspace --bins
//! cargo run --release -p fleet-tests --bin fleet-load -- [REQUESTS] [CONCURRENCY]
#![expect(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark prints its report and stops at the first surprise"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_tests::{Fleet, FleetOptions};
use serde_json::json;
use tokio::sync::Semaphore;

struct Scenario {
    name: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: String,
}

struct Outcome {
    ok: usize,
    failed: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn run(
    http: &reqwest::Client,
    scenario: &Scenario,
    requests: usize,
    concurrency: usize,
) -> Outcome {
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        let permit = Arc::clone(&permits).acquire_owned().await;
        let mut request = http.post(&scenario.url).body(scenario.body.clone());
        for (name, value) in &scenario.headers {
            request = request.header(*name, value);
        }
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let sent = Instant::now();
            let ok = match request.send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    response.bytes().await.is_ok() && ok
                }
                Err(_) => false,
            };
            (ok, sent.elapsed())
        }));
    }
    let mut outcome = Outcome {
        ok: 0,
        failed: 0,
        wall: Duration::ZERO,
        latencies: Vec::with_capacity(requests),
    };
    for task in tasks {
        match task.await {
            Ok((true, latency)) => {
                outcome.ok += 1;
                outcome.latencies.push(latency);
            }
            _ => outcome.failed += 1,
        }
    }
    outcome.wall = started.elapsed();
    outcome.latencies.sort();
    outcome
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);

    let fleet = Fleet::start(FleetOptions {
        env: [("RUST_LOG".to_owned(), "warn".to_owned())].into(),
        ..FleetOptions::default()
    })
    .await;
    let key = std::fs::read_to_string(fleet.secrets_dir().join("groq-api-key"))
        .expect("the fleet wrote the Groq key");
    let messages = json!([{"role": "user", "content": "hi"}]);
    let scenarios = [
        Scenario {
            name: "groq emulator, direct (baseline)",
            url: format!("{}/chat/completions", fleet.groq.base_url()),
            headers: vec![("authorization", format!("Bearer {key}"))],
            body: json!({"model": "llama-3.1-8b-instant", "messages": messages}).to_string(),
        },
        Scenario {
            name: "provider-proxy via gateway",
            url: fleet.url("provider-proxy", ""),
            headers: Vec::new(),
            body: json!({"provider": "groq", "model": "llama-3.1-8b-instant",
                         "task": "generate", "messages": messages})
            .to_string(),
        },
        Scenario {
            name: "llm-router via gateway",
            url: fleet.url("llm-router", ""),
            headers: Vec::new(),
            body: json!({"task": "generate", "prompt": "hi", "max_latency_ms": 2000}).to_string(),
        },
        Scenario {
            name: "llm-router via gateway, task by classify",
            url: fleet.url("llm-router", ""),
            headers: Vec::new(),
            body: json!({"prompt": "hi", "max_latency_ms": 250}).to_string(),
        },
    ];
    let http = http_client::client_builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");

    println!(
        "fleet-load: {requests} requests per scenario, concurrency {concurrency}, emulators answer at once"
    );
    println!(
        "{:<42} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "x p50", "failed"
    );
    let mut baseline_p50 = None;
    for scenario in &scenarios {
        // Warm-up: cold starts and connection pools are not what is measured.
        run(&http, scenario, concurrency * 4, concurrency).await;
        let outcome = run(&http, scenario, requests, concurrency).await;
        let p50 = percentile(&outcome.latencies, 0.50);
        let base = *baseline_p50.get_or_insert(p50);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<42} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            scenario.name,
            outcome.ok as f64 / outcome.wall.as_secs_f64(),
            ms(p50),
            ms(percentile(&outcome.latencies, 0.90)),
            ms(percentile(&outcome.latencies, 0.99)),
            p50.as_secs_f64() / base.as_secs_f64().max(1e-9),
            outcome.failed,
        );
    }
    fleet.stop().await;
}
