//! The fleet behind the real OpenFaaS components (of-watchdog 0.11.6, the CE
//! gateway 0.27.14, faas-cli 0.18.12; see `fleet_tests::openfaas`).
//!
//! - Every function behind `fwatchdog` (mode=http): health, a request, a
//!   chunked body, 413.
//! - Server-sent events through the watchdog with and without
//!   `Accept: text/event-stream` (the watchdog streams only with it).
//! - SIGTERM to the watchdog with a request and a stream in flight.
//! - A budget past `exec_timeout` ends in the router's JSON 504.
//! - The chain through the CE gateway, the dev gateway serving as its
//!   provider: a routed request, streaming, one X-Call-Id, `/system/functions`
//!   and the official openai Python client configured as the README says.
//! - faas-cli: `build --shrinkwrap`, `generate`, `new --append` on a copy of
//!   the repository.
//!
//! The watchdog's metrics port (8081) and the gateway's ports (8080, 8082)
//! are fixed: the tests take turns (`openfaas::exclusive`).
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dev_gateway::{DevGateway, FunctionSpec};
use fleet_tests::openfaas::{self, Arrivals, Gateway, Watchdog};
use fleet_tests::{Fleet, FleetOptions, repo_root};
use provider_emulator::{Credentials, Emulator, EmulatorConfig, LatencyModel, ProviderFlavor};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Output speed of the slow Groq emulator: a streamed answer takes seconds.
const TOKENS_PER_SECOND: f64 = 12.0;

/// A Groq emulator with the fleet's Groq credentials (same seed) that
/// streams at [`TOKENS_PER_SECOND`] after `ttft_ms`.
async fn slow_groq(ttft_ms: f64) -> Emulator {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (credentials, _) = Credentials::generate(ProviderFlavor::Groq, &root, 7).unwrap();
    Emulator::start(
        listener,
        EmulatorConfig::instant(ProviderFlavor::Groq)
            .with_credentials(credentials)
            .with_latency(LatencyModel::fixed(ttft_ms, Some(TOKENS_PER_SECOND))),
    )
    .await
    .unwrap()
}

/// The fleet (functions run bare by the dev gateway) with `groq` as Groq.
async fn fleet_with(groq: Option<&Emulator>, env: &[(&str, &str)]) -> Fleet {
    let mut env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Some(groq) = groq {
        env.insert("GROQ_BASE_URL".to_owned(), groq.base_url());
    }
    Fleet::start(FleetOptions {
        env,
        ..FleetOptions::default()
    })
    .await
}

fn spec<'a>(fleet: &'a Fleet, name: &str) -> &'a FunctionSpec {
    fleet.specs.iter().find(|s| s.name == name).unwrap()
}

/// `name` behind the real watchdog, calling the other functions through the
/// fleet's gateway, with `extra` settings.
async fn behind_watchdog(
    bin: &Path,
    fleet: &Fleet,
    name: &str,
    extra: &[(&str, &str)],
) -> Watchdog {
    let spec = spec(fleet, name);
    let mut env = spec.env.clone();
    env.insert("OPENFAAS_GATEWAY_URL".to_owned(), fleet.gateway.url());
    env.insert(
        "SECRETS_DIR".to_owned(),
        fleet.secrets_dir().display().to_string(),
    );
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    Watchdog::start(bin, &spec.command, &env).await
}

/// A request each function serves, and what its answer must hold.
fn request_for(name: &str) -> (Value, &'static str) {
    match name {
        "llm-router" => (
            json!({"task":"generate","prompt":"hi","max_latency_ms":5000}),
            "provider",
        ),
        "classify" => (
            json!({"text":"Classify the sentiment: great phone"}),
            "task",
        ),
        "embed" => (json!({"input":["hello","world"]}), "embeddings"),
        "provider-proxy" => (
            json!({"provider":"groq","model":"llama-3.1-8b-instant","task":"generate",
                   "messages":[{"role":"user","content":"hello"}]}),
            "usage",
        ),
        other => panic!("no request for {other}"),
    }
}

/// A body sent with `Transfer-Encoding: chunked` (no Content-Length).
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

async fn post(http: &reqwest::Client, url: &str, body: reqwest::Body) -> (u16, Value) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn exits_zero(watchdog: &mut Watchdog) {
    let status = tokio::time::timeout(Duration::from_secs(30), watchdog.child.wait())
        .await
        .expect("the watchdog exits after draining")
        .unwrap();
    assert!(status.success(), "watchdog exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_behind_the_real_watchdog() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let _turn = openfaas::exclusive().await;
    // The embed model when fetched, else the Ollama backend (no download).
    let has_model = repo_root()
        .join("functions/embed/assets/model/model.safetensors")
        .exists();
    let backend = if has_model { "local" } else { "ollama" };
    let fleet = fleet_with(None, &[("EMBED_BACKEND", backend)]).await;
    for name in ["llm-router", "classify", "embed", "provider-proxy"] {
        let mut watchdog = behind_watchdog(
            &bin,
            &fleet,
            name,
            &[
                ("MAX_BODY_BYTES", "65536"),
                ("exec_timeout", "20s"),
                ("write_timeout", "25s"),
                // Not 0: of-watchdog then waits forever after SIGTERM
                // (time.Tick(0) is a nil channel).
                ("healthcheck_interval", "1s"),
            ],
        )
        .await;
        let url = format!("{}/", watchdog.url);
        assert_eq!(
            openfaas::status_of(&fleet.http, &format!("{}/_/health", watchdog.url)).await,
            200,
            "{name}: the watchdog's health"
        );

        let (request, field) = request_for(name);
        let (status, answer) = post(&fleet.http, &url, request.to_string().into()).await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert!(answer.get(field).is_some(), "{name}: {answer}");

        let (status, answer) =
            post(&fleet.http, &url, chunked(request.to_string().into_bytes())).await;
        assert_eq!(status, 200, "{name}, chunked: {answer}");
        assert!(answer.get(field).is_some(), "{name}, chunked: {answer}");

        // Over MAX_BODY_BYTES, chunked: the function's JSON 413 comes through.
        let mut big = request.clone();
        big["padding"] = Value::String("x".repeat(200_000));
        let (status, answer) = post(&fleet.http, &url, chunked(big.to_string().into_bytes())).await;
        assert_eq!(status, 413, "{name}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{name}: {answer}");

        watchdog.terminate();
        exits_zero(&mut watchdog).await;
    }
    fleet.stop().await;
}

/// A streamed chat completion, timed.
async fn stream_completion(http: &reqwest::Client, url: &str, accept: &str) -> Arrivals {
    let body = json!({
        "model": "auto", "stream": true, "max_tokens": 24,
        "messages": [{"role": "user", "content": "tell me a story"}],
        "task": "generate", "max_latency_ms": 30000
    });
    let sent = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    Arrivals::read(response, sent).await
}

/// Content chunks of a streamed answer and the groups they arrived in
/// (chunks less than 20 ms apart are one group).
fn content_bursts(arrivals: &Arrivals) -> (usize, usize) {
    let mut chunks = 0;
    let mut bursts = 0;
    let mut last: Option<f64> = None;
    for (event, at) in arrivals.events.iter().zip(&arrivals.at_ms) {
        if event.starts_with("data:") && event.contains("\"content\":\"") {
            chunks += 1;
            if last.is_none_or(|l| at - l > 20.0) {
                bursts += 1;
            }
            last = Some(*at);
        }
    }
    (chunks, bursts)
}

/// Incremental: the content chunks, generated about 80 ms apart, arrive
/// apart (at least half of them on their own).
fn assert_incremental(what: &str, arrivals: &Arrivals) {
    let (chunks, bursts) = content_bursts(arrivals);
    assert!(
        chunks >= 8,
        "{what}: a long enough answer: {}",
        arrivals.body
    );
    assert!(
        bursts * 2 >= chunks,
        "{what}: {chunks} content chunks arrived in {bursts} bursts: {}",
        arrivals.summary()
    );
}

/// Buffered: the watchdog's 4 KiB response buffer sends the answer in no
/// more flushes than its size allows.
fn assert_buffered(what: &str, arrivals: &Arrivals) {
    let (chunks, bursts) = content_bursts(arrivals);
    assert!(
        chunks >= 8,
        "{what}: a long enough answer: {}",
        arrivals.body
    );
    let flushes = arrivals.body.len() / 4096 + 2;
    assert!(
        bursts <= flushes,
        "{what}: {chunks} content chunks in {bursts} bursts, more than {flushes} flushes: {}",
        arrivals.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_through_the_watchdog_streams_only_when_accept_asks_for_it() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let _turn = openfaas::exclusive().await;
    let groq = slow_groq(0.0).await;
    let fleet = fleet_with(Some(&groq), &[]).await;
    let watchdog = behind_watchdog(&bin, &fleet, "llm-router", &[]).await;
    let url = format!("{}/v1/chat/completions", watchdog.url);

    let streamed = stream_completion(&fleet.http, &url, "text/event-stream").await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(streamed.body.contains("data: [DONE]"), "{}", streamed.body);
    println!(
        "watchdog, Accept: text/event-stream: {}",
        streamed.summary()
    );
    assert_eq!(streamed.headers["x-accel-buffering"], "no");
    assert_eq!(streamed.headers["cache-control"], "no-cache");
    assert_incremental("through the watchdog with Accept", &streamed);

    // What the openai Python client sends by default.
    let buffered = stream_completion(&fleet.http, &url, "application/json").await;
    assert_eq!(buffered.status, 200, "{}", buffered.body);
    println!("watchdog, Accept: application/json: {}", buffered.summary());
    assert_buffered("through the watchdog without Accept", &buffered);

    drop(watchdog);
    fleet.stop().await;
    groq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_watchdog_drains_a_request_and_a_stream() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let _turn = openfaas::exclusive().await;
    // The first token after a second and a half: both calls are in flight
    // when the signal comes.
    let groq = slow_groq(1500.0).await;
    let fleet = fleet_with(Some(&groq), &[]).await;
    let mut watchdog = behind_watchdog(
        &bin,
        &fleet,
        "llm-router",
        &[("healthcheck_interval", "1s"), ("write_timeout", "20s")],
    )
    .await;
    let http = fleet.http.clone();
    let plain_url = format!("{}/", watchdog.url);
    let plain = tokio::spawn({
        let http = http.clone();
        async move {
            post(
                &http,
                &plain_url,
                json!({"task":"generate","prompt":"hi","max_latency_ms":30000})
                    .to_string()
                    .into(),
            )
            .await
        }
    });
    let stream_url = format!("{}/v1/chat/completions", watchdog.url);
    let stream = tokio::spawn({
        let http = http.clone();
        async move { stream_completion(&http, &stream_url, "text/event-stream").await }
    });
    tokio::time::timeout(Duration::from_secs(20), groq.wait_for_requests(2))
        .await
        .expect("both calls reach the provider");

    watchdog.terminate();
    let (status, answer) = plain.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["output"].is_string(), "{answer}");
    let streamed = stream.await.unwrap();
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(streamed.body.contains("data: [DONE]"), "{}", streamed.body);
    exits_zero(&mut watchdog).await;
    fleet.stop().await;
    groq.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_past_exec_timeout_ends_in_the_routers_json_504() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let _turn = openfaas::exclusive().await;
    let fleet = fleet_with(None, &[]).await;
    let watchdog = behind_watchdog(
        &bin,
        &fleet,
        "llm-router",
        &[("exec_timeout", "2s"), ("write_timeout", "5s")],
    )
    .await;
    // Every provider hangs; the caller allows ten minutes.
    let response = fleet
        .http
        .post(format!("{}/", watchdog.url))
        .header("content-type", "application/json")
        .body(
            json!({"task":"generate","prompt":"hi [[emulator:hang]]","max_latency_ms":600000})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    // The watchdog's own 504 has no body and X-OpenFaaS-Internal set.
    assert!(response.headers().get("x-openfaas-internal").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout", "{body}");
    drop(watchdog);
    fleet.stop().await;
}

/// A wrapper the dev gateway starts as a function: the function calls the
/// others through the CE gateway, and `llm-router` runs behind the watchdog.
const WRAPPER: &str = r#"#!/bin/sh
# wrapper FUNCTION_BINARY
export OPENFAAS_GATEWAY_URL="$CHAIN_GATEWAY_URL"
if [ -n "${CHAIN_WATCHDOG:-}" ]; then
    export port="${upstream_url##*:}"
    export upstream_url="http://127.0.0.1:$CHAIN_UPSTREAM_PORT"
    export fprocess="$1" mode=http prefix_logs=false
    export TMPDIR="$CHAIN_TMPDIR"
    export ready_path=/_/ready
    exec "$CHAIN_WATCHDOG"
fi
exec "$1"
"#;

/// The dev gateway as the CE gateway's provider, each function calling the
/// others through the CE gateway; llm-router behind the watchdog.
async fn chain_provider(bin: &Path, fleet: &Fleet, scratch: &Path) -> dev_gateway::RunningGateway {
    let wrapper = scratch.join("wrapper.sh");
    std::fs::write(&wrapper, WRAPPER).unwrap();
    let specs: Vec<FunctionSpec> = fleet
        .specs
        .iter()
        .map(|spec| {
            let mut spec = spec.clone();
            let binary = spec.command.clone();
            spec.command = PathBuf::from("/bin/sh");
            spec.args = vec![wrapper.display().to_string(), binary.display().to_string()];
            spec.env.insert(
                "CHAIN_GATEWAY_URL".to_owned(),
                format!("http://127.0.0.1:{}", openfaas::GATEWAY_PORT),
            );
            if spec.name == "llm-router" {
                spec.env.insert(
                    "CHAIN_WATCHDOG".to_owned(),
                    bin.join("fwatchdog").display().to_string(),
                );
                spec.env.insert(
                    "CHAIN_UPSTREAM_PORT".to_owned(),
                    openfaas::free_port().to_string(),
                );
                spec.env
                    .insert("CHAIN_TMPDIR".to_owned(), scratch.display().to_string());
            }
            spec
        })
        .collect();
    let mut provider = DevGateway::new(specs);
    provider.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    provider.secrets_dir = Some(fleet.secrets_dir().to_path_buf());
    provider.startup_timeout = Duration::from_secs(20);
    provider.start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_through_the_real_gateway() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let _turn = openfaas::exclusive().await;
    let groq = slow_groq(0.0).await;
    let fleet = fleet_with(Some(&groq), &[("EMBED_BACKEND", "ollama")]).await;
    let scratch = tempfile::tempdir().unwrap();
    let provider = chain_provider(&bin, &fleet, scratch.path()).await;
    let gateway = Gateway::start(&bin, &provider.url()).await;
    let http = fleet.http.clone();
    let function = |path: &str| format!("{}/function/llm-router{path}", gateway.url);
    // Scale from zero, then the function itself ready behind its watchdog.
    openfaas::wait_for(
        "llm-router ready behind the gateway",
        Duration::from_secs(30),
        async || openfaas::status_of(&http, &function("/_/ready")).await == 200,
    )
    .await;

    // A routed request: llm-router -> gateway -> provider-proxy -> Groq.
    let (status, answer) = post(
        &http,
        &function(""),
        json!({"task":"generate","prompt":"hi","max_latency_ms":20000,"max_tokens":8})
            .to_string()
            .into(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["output"].is_string(), "{answer}");

    // Streaming through gateway and watchdog, with one X-Call-Id.
    let url = function("/v1/chat/completions");
    let streamed = stream_completion(&http, &url, "text/event-stream").await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    println!(
        "gateway + watchdog, Accept: text/event-stream: {}",
        streamed.summary()
    );
    assert_incremental("through the gateway with Accept", &streamed);
    assert_eq!(
        streamed.headers.get_all("x-call-id").iter().count(),
        1,
        "{:?}",
        streamed.headers
    );
    let buffered = stream_completion(&http, &url, "application/json").await;
    println!(
        "gateway + watchdog, Accept: application/json: {}",
        buffered.summary()
    );
    assert_buffered("through the gateway without Accept", &buffered);
    assert_eq!(buffered.headers.get_all("x-call-id").iter().count(), 1);

    // The gateway lists functions (asking the fake Prometheus) without panicking.
    let listed: Value = http
        .get(format!("{}/system/functions", gateway.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&"llm-router"), "{listed}");

    // The official openai client, configured as the README says.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/python/openai_streaming.py"))
        .arg(&gateway.url)
        .arg(TOKENS_PER_SECOND.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    drop(gateway);
    provider.shutdown().await.unwrap();
    fleet.stop().await;
    groq.shutdown().await;
}

fn faas_cli(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(bin.join("faas-cli"))
        .args(args)
        .current_dir(dir)
        .env("VERTEX_PROJECT", "cli-project")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "faas-cli {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The parts of the repository faas-cli reads, without the embed model
/// (large, and not needed to lay out build contexts).
fn copy_repo(to: &Path) {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "tar -C \"$0\" --exclude=functions/embed/assets/model --exclude=target -cf - \
             crates functions template stack.yml Cargo.lock | tar -C \"$1\" -xf -",
        )
        .arg(repo_root())
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faas_cli_shrinkwraps_generates_and_appends_on_a_copy_of_the_repo() {
    let Some(bin) = openfaas::bin_dir() else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    copy_repo(repo.path());

    faas_cli(
        &bin,
        repo.path(),
        &["build", "--shrinkwrap", "-f", "stack.yml"],
    );
    for name in ["llm-router", "classify", "embed", "provider-proxy"] {
        let context = repo.path().join("build").join(name);
        for file in [
            "Dockerfile",
            "build-function.sh",
            "function/Cargo.toml",
            "function/Cargo.lock",
            "function/crates/faas-runtime/Cargo.toml",
        ] {
            assert!(context.join(file).exists(), "{name}: no {file}");
        }
        let manifest = std::fs::read_to_string(context.join("function/Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
    }
    assert!(
        repo.path()
            .join("build/embed/function/assets.sha256")
            .exists()
    );

    // generate: faas-cli's Knative output drops the scaling labels and every
    // request and limit; knative-manifest keeps them.
    let generated = faas_cli(
        &bin,
        repo.path(),
        &[
            "generate",
            "--api=serving.knative.dev/v1",
            "-f",
            "stack.yml",
        ],
    );
    assert_eq!(generated.matches("kind: Service").count(), 4, "{generated}");
    assert!(
        !generated.contains("autoscaling.knative.dev"),
        "{generated}"
    );
    assert!(!generated.contains("resources"), "{generated}");
    assert!(generated.contains("value: cli-project"), "{generated}");

    // new --append lands under functions:, so build --filter finds it.
    faas_cli(
        &bin,
        repo.path(),
        &[
            "new",
            "fresh-fn",
            "--lang",
            "rust-fleet",
            "--handler",
            "./functions/fresh-fn",
            "--append",
            "stack.yml",
        ],
    );
    let stack = dev_gateway::Stack::load(&repo.path().join("stack.yml"), &|_| None).unwrap();
    assert!(stack.functions.contains_key("fresh-fn"));
    faas_cli(
        &bin,
        repo.path(),
        &[
            "build",
            "--shrinkwrap",
            "-f",
            "stack.yml",
            "--filter",
            "fresh-fn",
        ],
    );
    let context = repo.path().join("build/fresh-fn");
    assert!(context.join("function/src/main.rs").exists());
    assert!(context.join("function/crates/faas-runtime").exists());
}

#[test]
fn the_binaries_are_required_unless_declared_unavailable() {
    // CI builds them (.ci/run); only an explicit declaration skips.
    if std::env::var(openfaas::AVAILABILITY_ENV).is_ok_and(|v| v == "unavailable") {
        return;
    }
    assert!(openfaas::bin_dir().is_some());
}
