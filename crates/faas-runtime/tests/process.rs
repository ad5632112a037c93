//! `run` as a real process: the test binary starts itself again as the function process (the
//! ignored `child_process` test), with the environment the watchdog would give it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitCode, ExitStatus, Stdio};

use bytes::Bytes;
use faas_runtime::{Body, Handler, RequestContext, full};
use http::{Request, Response};
use prometheus::Registry;
use serde_json::Value;

/// The child's exit status when `run` returned `ExitCode::FAILURE` (libtest's failure status).
const FAILURE_STATUS: i32 = 101;

/// Set in the child's environment: what the child should do.
const CHILD_MODE: &str = "FAAS_RUNTIME_TEST_CHILD_MODE";

struct Hello;

impl Handler for Hello {
    async fn handle(&self, _req: Request<Bytes>, _cx: RequestContext) -> Response<Body> {
        Response::new(full("hello"))
    }
}

#[test]
#[ignore = "the function process that the other tests in this file start"]
fn child_process() -> ExitCode {
    let mode = std::env::var(CHILD_MODE).expect("only run as a child process");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = runtime.block_on(faas_runtime::run(
        "child-fn",
        Registry::new(),
        |_config| async move {
            match mode.as_str() {
                "fail-init" => Err("the model file is missing".to_owned()),
                _ => Ok(Hello),
            }
        },
    ));
    // libtest turns this into the process status: 0, or 101 for a failure status.
    code
}

/// Helpers, marked as test code so that clippy's allowances for tests (`expect`) cover them.
#[cfg(test)]
mod function_process {
    use super::*;

    /// The function process: the test binary running `child_process`. Killed if a test fails
    /// before it exited.
    pub(crate) struct FunctionProcess {
        child: Child,
        stdout: BufReader<ChildStdout>,
    }

    impl FunctionProcess {
        /// Starts the child with `mode` and the given variables (plus a loopback ephemeral listener).
        pub(crate) fn start(mode: &str, vars: &[(&str, &str)]) -> Self {
            let mut command = Command::new(std::env::current_exe().expect("test binary path"));
            command
                .args([
                    "child_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_MODE, mode)
                .env("LISTEN_ADDR", "127.0.0.1:0")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "info")
                .stdout(Stdio::piped());
            for variable in [
                "PORT",
                "upstream_url",
                "http_upstream_url",
                "MAX_BODY_BYTES",
            ] {
                command.env_remove(variable);
            }
            for (name, value) in vars {
                command.env(name, value);
            }
            let mut child = command.spawn().expect("start the child process");
            let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            Self { child, stdout }
        }

        /// Reads log lines until the one announcing the listen address.
        pub(crate) fn listen_addr(&mut self) -> SocketAddr {
            let stdout = &mut self.stdout;
            let lines = std::iter::from_fn(|| {
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(0) => None,
                    Ok(_) => Some(Ok(line)),
                    Err(err) => Some(Err(err)),
                }
            });
            json_lines(lines)
                .find_map(|log| log["listen"].as_str().map(str::to_owned))
                .expect("a log line with the listen address")
                .parse()
                .expect("a socket address")
        }

        pub(crate) fn send_sigterm(&self) {
            let status = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
        }

        /// Waits for the process to exit; returns its status and the rest of its log lines.
        pub(crate) fn finish(&mut self) -> (ExitStatus, Vec<Value>) {
            let logs = json_lines((&mut self.stdout).lines()).collect();
            let status = self.child.wait().expect("wait for the child");
            (status, logs)
        }
    }

    impl Drop for FunctionProcess {
        fn drop(&mut self) {
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// The JSON log lines of the child's stdout. The test harness's own lines are skipped, and its
    /// "test child_process ... " prefix, which the first log line follows without a line break, is
    /// cut off.
    fn json_lines(
        lines: impl Iterator<Item = std::io::Result<String>>,
    ) -> impl Iterator<Item = Value> {
        lines
            .map(|line| line.expect("read the child's stdout"))
            .filter_map(|line| {
                let start = line.find('{')?;
                serde_json::from_str::<Value>(&line[start..]).ok()
            })
    }

    pub(crate) fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: fn\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    }
}

use function_process::{FunctionProcess, get};

#[test]
fn run_serves_then_exits_0_on_sigterm() {
    let mut function = FunctionProcess::start(
        "serve",
        &[("healthcheck_interval", "0"), ("write_timeout", "5s")],
    );
    let addr = function.listen_addr();

    // A response proves the accept loop runs, which it only does after the signal handlers were
    // installed (serve polls the shutdown future before accepting).
    assert!(get(addr, "/_/health").starts_with("HTTP/1.1 200"));
    let response = get(addr, "/anything");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello"), "{response}");

    function.send_sigterm();
    let (status, logs) = function.finish();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        logs.iter().any(|log| log["message"] == "shutdown complete"),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|log| log["message"] == "request completed"
            && log["status"] == 200
            && log["span"]["path"] == "/anything"
            && log["span"]["call_id"].is_string()),
        "{logs:?}"
    );
}

#[test]
fn run_exits_non_zero_when_init_fails() {
    let (status, logs) = FunctionProcess::start("fail-init", &[]).finish();
    assert_eq!(status.code(), Some(FAILURE_STATUS), "{status}");
    assert!(
        logs.iter().any(|log| log["level"] == "ERROR"
            && log["error"]
                .as_str()
                .is_some_and(|e| e.contains("the model file is missing"))),
        "{logs:?}"
    );
}

#[test]
fn run_exits_non_zero_on_invalid_configuration() {
    let (status, logs) = FunctionProcess::start("serve", &[("write_timeout", "0")]).finish();
    assert_eq!(status.code(), Some(FAILURE_STATUS), "{status}");
    assert!(
        logs.iter()
            .any(|log| log["message"] == "invalid configuration"
                && log["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("write_timeout"))),
        "{logs:?}"
    );
}
