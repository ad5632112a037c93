//! Helpers shared by the integration tests: the echo function, an HTTP client,
//! bounded polling and process checks.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dev_gateway::{FunctionSpec, FunctionStatus, RunningGateway};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Upper bound for anything the tests wait for; generous for a loaded CI box.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// A spec running the echo test function.
pub(crate) fn echo(name: &str) -> FunctionSpec {
    FunctionSpec::new(name, env!("CARGO_BIN_EXE_dev-gateway-echo")).with_env("RUST_BACKTRACE", "1")
}

/// A fresh folder for one test, under cargo's per-target temp folder.
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dev-gateway-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A plain HTTP/1 client.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub(crate) fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request and returns the response with its body unread.
    pub(crate) async fn open(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Response<Incoming> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        tokio::time::timeout(DEADLINE, self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no response from {url} within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"))
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let response = self.open(method, url, headers, body).await;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(DEADLINE, body.collect())
            .await
            .expect("body not finished in time")
            .expect("body failed")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub(crate) async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], "").await
    }
}

/// `GET /system/function/<name>` through the HTTP API.
pub(crate) async fn function_status(
    http: &Http,
    gateway: &RunningGateway,
    name: &str,
) -> FunctionStatus {
    let reply = http
        .get(&format!("{}/system/function/{name}", gateway.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// Polls `check` every 20 ms until it yields `Some`, failing the test after [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a process with this pid exists (and is not yet reaped).
pub(crate) fn process_exists(pid: u64) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, None).is_ok()
}

/// The pid the echo function reports in its JSON echo.
pub(crate) fn pid_of(reply: &Reply) -> u64 {
    reply.json()["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in {}", reply.text()))
}
