//! What the fleet writes to its logs: never a provider secret, never a
//! private prompt. Runs the dev-gateway binary with every function under it
//! and reads everything they print.
#![expect(
    clippy::unwrap_used,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secret_and_no_private_prompt() {
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
        "VERTEX_PROJECT={}\nRUST_LOG=debug\nLOG_FORMAT=json\nhealthcheck_interval=0s",
        provider_emulator::credentials::TEST_PROJECT_ID
    )
    .unwrap();

    let port = free_port();
    let mut gateway = tokio::process::Command::new(bin_dir().join("dev-gateway"))
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
        .env("RUST_LOG", "debug")
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

    let marker = "confidential-patient-record-93c1";
    let requests = [
        json!({"task":"generate","prompt":format!("{marker} summarise"),"max_latency_ms":200,"private":true}),
        json!({"task":"reason","prompt":format!("{marker} explain"),"max_latency_ms":5000,"private":true}),
        json!({"task":"generate","prompt":"hello","max_latency_ms":200}),
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
    for emulator in emulators {
        emulator.shutdown().await;
    }
}
