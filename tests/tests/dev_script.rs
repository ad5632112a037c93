//! `scripts/dev.sh` as the README runs it: every provider emulated and
//! configured, so medium and hard requests (which reach the strong external
//! models) answer 200, and two fleets run side by side on one host.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::process::Stdio;
use std::time::Duration;

use fleet_tests::{bin_dir, repo_root};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// One `scripts/dev.sh`, in a process group of its own.
struct DevFleet {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far, for failure messages.
    printed: String,
}

impl DevFleet {
    /// Starts dev.sh on a free gateway port with its state in `state`.
    fn start(state: &std::path::Path) -> DevFleet {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec scripts/dev.sh 2>&1")
            .current_dir(repo_root())
            .env("DEV_BUILD", "0")
            .env("DEV_GATEWAY_LISTEN", "127.0.0.1:0")
            .env("DEV_STATE_DIR", state)
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs");
        let stdout = child.stdout.take().expect("piped stdout");
        DevFleet {
            child,
            lines: BufReader::new(stdout).lines(),
            printed: String::new(),
        }
    }

    /// Reads its output until a line contains `marker`; returns that line.
    async fn wait_for(&mut self, marker: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("readable output") {
                self.printed.push_str(&line);
                self.printed.push('\n');
                if line.contains(marker) {
                    return Some(line);
                }
            }
            None
        };
        // A bound, not a synchronisation: the line is what is waited for.
        let found = tokio::time::timeout(Duration::from_secs(120), read).await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("dev.sh never printed {marker:?}:\n{}", self.printed),
        }
    }

    /// The gateway's base URL, from dev-gateway's `listening on` line.
    async fn gateway(&mut self) -> String {
        let line = self.wait_for("dev-gateway listening on http://").await;
        let at = line.find("http://").expect("a URL");
        line[at..]
            .split_whitespace()
            .next()
            .expect("a URL")
            .to_owned()
    }

    /// SIGTERM to the whole group (dev.sh, emulators, gateway, functions),
    /// then waits for dev.sh to exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running");
        let status = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        assert!(exit.is_ok(), "dev.sh did not stop:\n{}", self.printed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dev_fleets_answer_medium_and_hard_side_by_side() {
    bin_dir(); // the binaries are built (DEV_BUILD=0 does not build them)
    assert!(
        repo_root()
            .join("functions/embed/assets/model/model.safetensors")
            .exists(),
        "the embed model is missing: run scripts/fetch-model.sh"
    );
    let state = tempfile::tempdir().expect("state dir");
    let mut fleets = [
        DevFleet::start(&state.path().join("a")),
        DevFleet::start(&state.path().join("b")),
    ];
    let http = http_client::client().expect("an HTTP client");
    let mut gateways = Vec::new();
    for fleet in &mut fleets {
        fleet.wait_for("anthropic: emulator at").await;
        gateways.push(fleet.gateway().await);
    }
    assert_ne!(gateways[0], gateways[1]);
    for gateway in &gateways {
        for difficulty in ["medium", "hard"] {
            let response = http
                .post(format!("{gateway}/function/llm-router"))
                .body(
                    json!({"task": "reason", "prompt": "Prove there are infinitely many primes.",
                           "max_latency_ms": 60000, "difficulty": difficulty})
                    .to_string(),
                )
                .send()
                .await
                .expect("the gateway answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON answer");
            assert_eq!(status, 200, "{gateway} {difficulty}: {body}");
            assert!(body["output"].as_str().is_some_and(|o| !o.is_empty()));
        }
        // Every provider of the catalogue is configured: pinned, each answers.
        for model in [
            "openai/gpt-5",
            "anthropic/claude-sonnet-4-5",
            "gemini/gemini-2.5-pro",
            "bedrock/claude-haiku-4-5",
            "mistral/mistral-small-latest",
        ] {
            let response = http
                .post(format!("{gateway}/function/llm-router"))
                .body(
                    json!({"task": "reason", "prompt": "hi", "max_latency_ms": 60000,
                           "model": model})
                    .to_string(),
                )
                .send()
                .await
                .expect("the gateway answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a JSON answer");
            assert_eq!(status, 200, "{gateway} {model}: {body}");
        }
    }
    for fleet in fleets {
        fleet.stop().await;
    }
}
