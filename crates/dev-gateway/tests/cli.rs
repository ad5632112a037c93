//! The `dev-gateway` binary end to end: stack.yml, env file, secrets folder,
//! `--build`, cold-start logging and SIGTERM handling.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

mod support;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use http::StatusCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Http, eventually, temp_dir};

/// The gateway binary with its log captured line by line.
struct GatewayProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl GatewayProcess {
    fn spawn<I, K, V>(dir: &Path, args: &[&str], envs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dev-gateway"))
            .current_dir(dir)
            .args(args)
            .envs(envs)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Keep draining the log so the gateway never blocks on a full pipe.
        let (lines_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        GatewayProcess {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Reads the log until the gateway says where it listens.
    fn base_url(&mut self) -> String {
        loop {
            let line = self.lines.recv_timeout(DEADLINE).unwrap_or_else(|_| {
                panic!(
                    "the gateway never said it was listening:\n{}",
                    self.log.join("\n")
                )
            });
            self.log.push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    }

    async fn wait(&mut self) -> ExitStatus {
        let status = eventually("the gateway to exit", || {
            let exited = self.child.try_wait().unwrap();
            async move { exited }
        })
        .await;
        // The pipe closes with the process; collect the rest of the log.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.log.push(line);
        }
        status
    }

    async fn terminate(&mut self) -> ExitStatus {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
        self.wait().await
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        // Only matters when an assertion failed half-way.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A project folder with a bin folder holding the echo function under `names`.
fn project(names: &[&str]) -> PathBuf {
    let dir = temp_dir("cli");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for name in names {
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_dev-gateway-echo"),
            dir.join("bin").join(name),
        )
        .unwrap();
    }
    dir
}

const STACK: &str = r#"version: 1.0
provider:
  name: openfaas
functions:
  echo-fn:
    lang: rust-fleet
    handler: ./functions/echo-fn
    image: ghcr.io/example/echo-fn:${TAG:-latest}
    environment:
      ECHO_TERM_FILE: ${MARKER}
      SHARED: inline
      OVERRIDDEN: stack
    environment_file:
      - env/common.yml
    secrets:
      - api-key
    labels:
      com.openfaas.scale.zero: true
      com.openfaas.scale.zero-duration: 10m
  warm:
    handler: ./functions/warm
    labels:
      com.openfaas.scale.min: 1
"#;

#[tokio::test]
async fn serves_a_stack_and_stops_its_functions_on_sigterm() {
    let dir = project(&["echo-fn", "warm"]);
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::write(
        dir.join("env/common.yml"),
        "environment:\n  FROM_FILE: file\n  SHARED: file\n",
    )
    .unwrap();
    std::fs::write(dir.join("dev.env"), "# local\nOVERRIDDEN=dev-env\n").unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/api-key"), "k").unwrap();
    std::fs::write(dir.join("stack.yml"), STACK).unwrap();
    let marker = dir.join("echo-fn.terminated");

    let mut gateway = GatewayProcess::spawn(
        &dir,
        &[
            "--stack",
            "stack.yml",
            "--listen",
            "127.0.0.1:0",
            "--bin-dir",
            "bin",
            "--secrets-dir",
            "secrets",
            "--env-file",
            "dev.env",
        ],
        [
            ("MARKER", marker.as_os_str()),
            // Set in the developer's shell, these must not move the function's listener.
            ("PORT", OsStr::new("1")),
            ("LISTEN_ADDR", OsStr::new("127.0.0.1:1")),
            ("http_upstream_url", OsStr::new("http://127.0.0.1:1")),
        ],
    );
    let base = gateway.base_url();

    let http = Http::new();
    let env = http.get(&format!("{base}/function/echo-fn/_/env")).await;
    assert_eq!(env.status, StatusCode::OK, "{}", env.text());
    let env = env.json();
    assert_eq!(env["FROM_FILE"], "file");
    assert_eq!(
        env["SHARED"], "file",
        "environment_file overrides inline, as faas-cli does"
    );
    assert_eq!(
        env["OVERRIDDEN"], "dev-env",
        "--env-file overrides the stack"
    );
    assert_eq!(env["OPENFAAS_GATEWAY_URL"], base.as_str());
    assert_eq!(env["ECHO_TERM_FILE"], marker.display().to_string().as_str());
    for variable in ["PORT", "LISTEN_ADDR", "http_upstream_url"] {
        assert!(
            env.get(variable).is_none(),
            "{variable} leaked into the function: {env}"
        );
    }
    assert_eq!(
        env["healthcheck_interval"], "0",
        "local processes stop without a grace period"
    );
    let secrets = http
        .get(&format!("{base}/function/echo-fn/_/secrets"))
        .await
        .json();
    assert_eq!(secrets, serde_json::json!({"api-key": "k"}));

    let listed = http.get(&format!("{base}/system/functions")).await.json();
    assert_eq!(listed[0]["name"], "echo-fn");
    assert_eq!(listed[0]["image"], "ghcr.io/example/echo-fn:latest");
    assert!(listed[0]["coldStartMs"].is_u64(), "{listed}");
    eventually("the scale.min function to be up", || async {
        let warm = http
            .get(&format!("{base}/system/function/warm"))
            .await
            .json();
        (warm["availableReplicas"] == 1).then_some(())
    })
    .await;

    let status = gateway.terminate().await;
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM");
    let cold_start = gateway
        .log
        .iter()
        .find(|line| line.contains("cold start: function ready") && line.contains("echo-fn"))
        .unwrap_or_else(|| panic!("cold starts must be logged:\n{}", gateway.log.join("\n")));
    assert!(cold_start.contains("cold_start_ms="), "{cold_start}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stand-in for cargo that records its arguments and exits with `code`.
fn fake_cargo(dir: &Path, code: u8) -> PathBuf {
    let script = dir.join("fake-cargo");
    let record = dir.join("cargo-args");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\nexit {code}\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn build_runs_cargo_once_for_all_functions() {
    let dir = project(&["echo-fn", "warm"]);
    std::fs::write(
        dir.join("stack.yml"),
        "functions:\n  echo-fn:\n    handler: ./a\n  warm:\n    handler: ./b\n",
    )
    .unwrap();
    let cargo = fake_cargo(&dir, 0);
    let mut gateway = GatewayProcess::spawn(
        &dir,
        &["--listen", "127.0.0.1:0", "--bin-dir", "bin", "--build"],
        [("CARGO", &cargo)],
    );
    gateway.base_url();
    assert_eq!(
        std::fs::read_to_string(dir.join("cargo-args")).unwrap(),
        "build --bins -p echo-fn -p warm\n"
    );
    assert!(gateway.terminate().await.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_failed_build_or_a_bad_stack_exits_non_zero() {
    let dir = project(&["echo-fn"]);
    std::fs::write(
        dir.join("stack.yml"),
        "functions:\n  echo-fn:\n    handler: ./a\n",
    )
    .unwrap();
    let cargo = fake_cargo(&dir, 101);
    let mut gateway = GatewayProcess::spawn(
        &dir,
        &["--listen", "127.0.0.1:0", "--build"],
        [("CARGO", &cargo)],
    );
    assert!(!gateway.wait().await.success());
    assert!(
        gateway.log.iter().any(|l| l.contains("cargo build failed")),
        "{}",
        gateway.log.join("\n")
    );

    std::fs::write(
        dir.join("stack.yml"),
        "functions:\n  echo-fn:\n    secrets: api-key\n",
    )
    .unwrap();
    let mut gateway = GatewayProcess::spawn(&dir, &["--listen", "127.0.0.1:0"], [("UNUSED", "")]);
    assert!(!gateway.wait().await.success());
    let log = gateway.log.join("\n");
    assert!(
        log.contains("stack.yml") && log.contains("secrets: api-key"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sigint_stops_the_functions_gracefully_too() {
    let dir = project(&["echo-fn"]);
    let marker = dir.join("terminated");
    std::fs::write(
        dir.join("stack.yml"),
        "functions:\n  echo-fn:\n    environment:\n      ECHO_TERM_FILE: ${MARKER}\n    labels:\n      com.openfaas.scale.min: \"1\"\n",
    )
    .unwrap();
    let mut gateway = GatewayProcess::spawn(
        &dir,
        &["--listen", "127.0.0.1:0", "--bin-dir", "bin"],
        [("MARKER", &marker)],
    );
    let base = gateway.base_url();
    let http = Http::new();
    eventually("the scale.min function to be up", || async {
        let status = http
            .get(&format!("{base}/system/function/echo-fn"))
            .await
            .json();
        (status["availableReplicas"] == 1).then_some(())
    })
    .await;
    let pid = Pid::from_raw(i32::try_from(gateway.child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    assert!(gateway.wait().await.success());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM");
    std::fs::remove_dir_all(&dir).unwrap();
}
