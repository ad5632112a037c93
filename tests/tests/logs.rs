//! What the fleet writes to its logs: never a provider secret, never a
//! private prompt, and at `info` one access line per request per function.
//! Runs the dev-gateway binary with every function under it and reads
//! everything they print.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use fleet_tests::{OTHER_PROVIDERS, bin_dir, repo_root, start_emulator};
use provider_emulator::ProviderFlavor;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The dev-gateway binary with every function under it and every provider
/// emulated, its stdout and stderr captured.
struct LoggedFleet {
    gateway: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    secret_values: Vec<String>,
    emulators: Vec<provider_emulator::Emulator>,
    _secrets_dir: tempfile::TempDir,
    _env_file: tempfile::NamedTempFile,
}

impl LoggedFleet {
    /// Starts the fleet at log level `rust_log`, with `extra_env` lines in
    /// the functions' environment.
    async fn start(rust_log: &str, extra_env: &str) -> LoggedFleet {
        let secrets_dir = tempfile::tempdir().unwrap();
        let mut env_file = tempfile::NamedTempFile::new().unwrap();
        let mut secret_values = Vec::new();
        let mut emulators = Vec::new();
        let seed = [
            ("ollama", ProviderFlavor::Ollama, "OLLAMA_BASE_URL"),
            ("groq", ProviderFlavor::Groq, "GROQ_BASE_URL"),
            ("vertex", ProviderFlavor::Vertex, "VERTEX_BASE_URL"),
        ];
        for (_, flavor, variable) in seed.into_iter().chain(OTHER_PROVIDERS) {
            let (emulator, secrets) = start_emulator(flavor).await;
            for (name, value) in secrets {
                std::fs::write(secrets_dir.path().join(&name), &value).unwrap();
                // A service account's key is many lines; every line is secret.
                secret_values.extend(
                    value
                        .lines()
                        .filter(|l| l.len() >= 16 && !l.contains("BEGIN") && !l.contains("END"))
                        .map(str::to_owned),
                );
                if !value.contains('\n') {
                    secret_values.push(value);
                }
            }
            writeln!(env_file, "{variable}={}", emulator.base_url()).unwrap();
            emulators.push(emulator);
        }
        writeln!(
            env_file,
            "VERTEX_PROJECT={}\nRUST_LOG={rust_log}\nLOG_FORMAT=json\nhealthcheck_interval=0s\n{extra_env}",
            provider_emulator::credentials::TEST_PROJECT_ID
        )
        .unwrap();

        let port = free_port();
        let gateway = tokio::process::Command::new(bin_dir().join("dev-gateway"))
            .current_dir(repo_root())
            .args([
                "--stack",
                "stack.yml",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--secrets-dir")
            .arg(secrets_dir.path())
            .arg("--env-file")
            .arg(env_file.path())
            .arg("--bin-dir")
            .arg(bin_dir())
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = http_client::client().expect("an HTTP client");
        let until = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < until, "dev-gateway did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        LoggedFleet {
            gateway,
            base,
            http,
            secret_values,
            emulators,
            _secrets_dir: secrets_dir,
            _env_file: env_file,
        }
    }

    /// Stops the fleet (SIGTERM); returns everything it printed.
    async fn stop(mut self) -> String {
        let mut gateway = self.gateway;
        let pid = gateway.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut stdout = gateway.stdout.take().unwrap();
        let mut stderr = gateway.stderr.take().unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        let read = async {
            tokio::try_join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            )
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the fleet stops")
            .unwrap();
        let status = gateway.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        let logs = format!("{out}\n{err}");
        for emulator in self.emulators.drain(..) {
            emulator.shutdown().await;
        }
        logs
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secret_and_no_private_prompt() {
    let fleet = LoggedFleet::start("debug", "").await;
    let (base, http, secret_values) = (&fleet.base, &fleet.http, fleet.secret_values.clone());
    let marker = "confidential-patient-record-93c1";
    let requests = [
        json!({"task":"generate","prompt":format!("{marker} summarise"),"max_latency_ms":3000,"private":true}),
        json!({"task":"reason","prompt":format!("{marker} explain"),"max_latency_ms":5000,"private":true}),
        json!({"task":"generate","prompt":"hello","max_latency_ms":3000}),
        json!({"task":"reason","prompt":"why","max_latency_ms":5000}),
        json!({"task":"generate","prompt":"[[emulator:auth_failure]] hi","max_latency_ms":200}),
        json!({"task":"reason","prompt":"[[emulator:auth_failure]] hi","max_latency_ms":5000}),
        json!({"task":"generate","prompt":"[[emulator:rate_limit]] hi","max_latency_ms":200}),
        json!({"task":"embed","input":[marker],"private":true}),
    ];
    let mut statuses = Vec::new();
    for request in &requests {
        let response = http
            .post(format!("{base}/function/llm-router"))
            .body(request.to_string())
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        let body = response.text().await.unwrap();
        for secret in &secret_values {
            assert!(
                !body.contains(secret.as_str()),
                "a secret reached a caller: {body}"
            );
        }
    }
    assert_eq!(&statuses[..4], [200, 200, 200, 200], "{statuses:?}");
    assert!(statuses[4..7].iter().all(|s| *s >= 400), "{statuses:?}");
    // Every provider, including failing auth on each.
    for (provider, model) in [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-haiku-4-5"),
        ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("gemini", "gemini-2.5-flash"),
        ("mistral", "mistral-small-latest"),
    ] {
        for prompt in ["hi", "[[emulator:auth_failure]] hi"] {
            let body = json!({"provider":provider,"model":model,"task":"generate",
                "messages":[{"role":"user","content":prompt}]});
            let response = http
                .post(format!("{base}/function/provider-proxy"))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let text = response.text().await.unwrap();
            for secret in &secret_values {
                assert!(
                    !text.contains(secret.as_str()),
                    "{provider}: a secret in {text}"
                );
            }
        }
    }

    let logs = fleet.stop().await;

    // The capture works: the routing decisions and the failures are there.
    assert!(logs.contains("\"routed\""), "no routing log lines captured");
    assert!(
        logs.contains("provider call failed"),
        "no failure log lines captured"
    );
    for secret in &secret_values {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in the logs"
        );
    }
    assert!(
        !logs.contains(marker),
        "a private prompt appears in the logs"
    );
}

/// Lines of `logs` that are JSON log records, parsed.
fn records(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record.get("level").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_info_each_function_writes_one_access_line_per_request() {
    let fleet = LoggedFleet::start("info", "").await;
    let requests = 12;
    let mut call_ids = Vec::new();
    for i in 0..requests {
        let task = if i % 3 == 0 { "reason" } else { "generate" };
        let response = fleet
            .http
            .post(format!("{}/function/llm-router", fleet.base))
            .body(
                json!({"task":task,"prompt":format!("question {i}"),"max_latency_ms":5000})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let call_id = response.headers()["x-call-id"].to_str().unwrap().to_owned();
        call_ids.push(call_id);
    }
    let logs = fleet.stop().await;
    let records = records(&logs);
    let mut bytes = 0;
    for call_id in &call_ids {
        let lines: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| {
                r["span"]["call_id"] == call_id.as_str() || r["call_id"] == call_id.as_str()
            })
            .collect();
        bytes += lines.iter().map(|r| r.to_string().len() + 1).sum::<usize>();
        for function in ["llm-router", "provider-proxy"] {
            let access: Vec<_> = lines
                .iter()
                .filter(|r| r["span"]["function"] == function)
                .collect();
            assert_eq!(access.len(), 1, "{function} wrote {access:#?}");
            assert_eq!(access[0]["message"], "request completed");
            // The access line says what was served and what it cost.
            for field in [
                "provider",
                "model",
                "input_tokens",
                "output_tokens",
                "cost_usd",
            ] {
                assert!(
                    !access[0]["span"][field].is_null(),
                    "{function}'s access line lacks {field}: {}",
                    access[0]
                );
            }
        }
        // Any other function in the chain (classify) writes one line too.
        assert!(
            lines.iter().all(|r| r["message"] == "request completed"),
            "{lines:#?}"
        );
    }
    println!(
        "bytes logged per routed request at info: {}",
        bytes / call_ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_drops_successful_access_lines_but_keeps_failures() {
    let fleet = LoggedFleet::start("info", "LOG_SAMPLE_OK=0").await;
    let mut ok_ids = Vec::new();
    for i in 0..4 {
        let response = fleet
            .http
            .post(format!("{}/function/llm-router", fleet.base))
            .body(
                json!({"task":"generate","prompt":format!("hello {i}"),"max_latency_ms":5000})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ok_ids.push(response.headers()["x-call-id"].to_str().unwrap().to_owned());
    }
    let bad = fleet
        .http
        .post(format!("{}/function/llm-router", fleet.base))
        .body(r#"{"task":"juggle","prompt":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad_id = bad.headers()["x-call-id"].to_str().unwrap().to_owned();
    let logs = fleet.stop().await;
    let records = records(&logs);
    let about = |id: &str| {
        records
            .iter()
            .filter(|r| r["span"]["call_id"] == id)
            .count()
    };
    for id in &ok_ids {
        assert_eq!(about(id), 0, "a sampled-out call was logged: {id}");
    }
    let failure: Vec<_> = records
        .iter()
        .filter(|r| r["span"]["call_id"] == bad_id.as_str())
        .collect();
    assert_eq!(failure.len(), 1, "{failure:#?}");
    assert_eq!(failure[0]["status"], 400);
    assert_eq!(failure[0]["span"]["error"], "invalid");
}
