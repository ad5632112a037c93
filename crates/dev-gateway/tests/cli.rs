//! The `dev-gateway` binary end to end: stack.yml, env file, secrets folder,
//! cold-start logging and SIGTERM handling.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use http::StatusCode;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEADLINE, Http, eventually, temp_dir};

#[tokio::test]
async fn serves_a_stack_and_stops_its_functions_on_sigterm() {
    let dir = temp_dir("cli");
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // The binary of function <name> is <bin-dir>/<name>.
    for name in ["echo-fn", "warm"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dev-gateway-echo"), bin_dir.join(name))
            .unwrap();
    }
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::write(
        dir.join("env/common.yml"),
        "environment:\n  FROM_FILE: file\n  SHARED: file\n",
    )
    .unwrap();
    std::fs::write(dir.join("dev.env"), "# local\nOVERRIDDEN=dev-env\n").unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/api-key"), "k").unwrap();
    let marker = dir.join("echo-fn.terminated");
    std::fs::write(
        dir.join("stack.yml"),
        r#"version: 1.0
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
"#,
    )
    .unwrap();

    let mut gateway = Command::new(env!("CARGO_BIN_EXE_dev-gateway"))
        .current_dir(&dir)
        .args([
            "--stack",
            "stack.yml",
            "--listen",
            "127.0.0.1:0",
            "--bin-dir",
            "bin",
        ])
        .args(["--secrets-dir", "secrets", "--env-file", "dev.env"])
        .env("MARKER", &marker)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gateway_pid = Pid::from_raw(i32::try_from(gateway.id()).unwrap());

    // Keep draining the log so the gateway never blocks on a full pipe.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = gateway.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let next_line = |log: &mut Vec<String>| {
        let line = lines
            .recv_timeout(DEADLINE)
            .expect("the gateway stopped logging");
        log.push(line.clone());
        line
    };
    let base = loop {
        let line = next_line(&mut log);
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

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
    let secrets = http
        .get(&format!("{base}/function/echo-fn/_/secrets"))
        .await
        .json();
    assert_eq!(secrets, serde_json::json!({"api-key": "k"}));

    let listed = http.get(&format!("{base}/system/functions")).await.json();
    assert_eq!(listed[0]["name"], "echo-fn");
    assert_eq!(listed[0]["image"], "ghcr.io/example/echo-fn:latest");
    assert!(listed[0]["coldStartMs"].is_u64(), "{listed}");
    eventually("scale.min function to be up", || async {
        let warm = http
            .get(&format!("{base}/system/function/warm"))
            .await
            .json();
        (warm["availableReplicas"] == 1).then_some(())
    })
    .await;

    kill(gateway_pid, Signal::SIGTERM).unwrap();
    let status = eventually("the gateway to exit", || {
        let exited = gateway.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM");
    while let Ok(line) = lines.recv_timeout(DEADLINE) {
        log.push(line);
    }
    let cold_start = log
        .iter()
        .find(|line| line.contains("cold start: function ready") && line.contains("echo-fn"))
        .unwrap_or_else(|| panic!("cold starts must be logged:\n{}", log.join("\n")));
    assert!(cold_start.contains("cold_start_ms="), "{cold_start}");
    std::fs::remove_dir_all(&dir).unwrap();
}
