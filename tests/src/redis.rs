//! A real `redis-server` for tests, on an ephemeral port, ready when its log
//! says so.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The most time a server takes to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, with nothing persisted.
    ///
    /// Panics when `redis-server` is not installed: CI installs it
    /// (`.ci/run`); elsewhere `apt-get install -y redis-server`.
    pub async fn start() -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().await;
            match Self::start_on(port).await {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts `redis-server` on `port` (e.g. again, after [`RedisServer::kill`]).
    pub async fn start_on(port: u16) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().expect("redis dir");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "notice"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server could not be run ({e}): install it with \
                     `apt-get install -y redis-server` (CI's .ci/run does)"
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut log = Vec::new();
        let ready = tokio::time::timeout(READY_WITHIN, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let ready = line.contains("Ready to accept connections");
                log.push(line);
                if ready {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !ready {
            let _ = child.kill().await;
            return Err(log.join("\n"));
        }
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(RedisServer {
            child,
            port,
            _dir: dir,
        })
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server at once (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill redis-server");
    }
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a free port");
    listener.local_addr().expect("addr").port()
}
