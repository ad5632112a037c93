//! The embed function's binary on its own, with the local model: its vectors against
//! sentence-transformers' reference vectors, both APIs, and every kind of bad request.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

mod embed_support;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use embed_support::{assert_matches_reference, model_dir, reference, vector};
use fleet_tests::bin_dir;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

struct Function {
    child: Child,
    base: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(env: &[(&str, String)]) -> (Command, String) {
    let port = free_port();
    let mut command = Command::new(bin_dir().join("embed"));
    command
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        // The embed function alone, called directly: internal calls are
        // authenticated elsewhere (tests/tests/internal_auth.rs).
        .env("INTERNAL_AUTH", "off")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    (command, format!("http://127.0.0.1:{port}"))
}

impl Function {
    /// Starts the function with the model and small limits; returns once it is ready.
    async fn start() -> Function {
        Self::start_with(&[
            ("EMBED_MODEL_DIR", model_dir().display().to_string()),
            ("EMBED_MAX_INPUTS", "70".to_owned()),
            ("EMBED_MAX_TOKENS", "4000".to_owned()),
            ("MAX_BODY_BYTES", "262144".to_owned()),
        ])
        .await
    }

    /// Starts the function with `env`; returns once it is ready.
    async fn start_with(env: &[(&str, String)]) -> Function {
        let (mut command, base) = command(env);
        let child = command.spawn().expect("spawn embed");
        let http = http_client::client().expect("an HTTP client");
        // Readiness turns 200 once the model is loaded; the deadline only bounds a hang.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http.get(format!("{base}/_/ready")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < until, "embed did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Function { child, base, http }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("embed answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn stop(mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_vectors_match_sentence_transformers() {
    let function = Function::start().await;
    let (sentences, expected) = reference();
    let (status, body) = function
        .post("/", json!({"input": sentences}).to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider"], "local");
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let got: Vec<Vec<f32>> = body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(vector)
        .collect();
    assert_matches_reference(&got, &expected);
    // At least [CLS] and [SEP] per sentence, at most 256.
    let tokens = body["usage"]["input_tokens"].as_u64().unwrap();
    assert!((64 * 3..=64 * 256).contains(&tokens), "{tokens}");
    assert_eq!(body["usage"]["output_tokens"], 0);
    function.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_embeddings_have_openai_s_shape_and_the_same_vectors() {
    let function = Function::start().await;
    let (sentences, expected) = reference();
    let (status, body) = function
        .post(
            "/v1/embeddings",
            json!({"model":"all-MiniLM-L6-v2","input":[&sentences[3], &sentences[0]],
                   "encoding_format":"float"})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
    }
    let got: Vec<Vec<f32>> = data.iter().map(|d| vector(&d["embedding"])).collect();
    assert_matches_reference(&got, &[expected[3].clone(), expected[0].clone()]);
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 4);
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);

    // One string, no model: "hello world" is [CLS] hello world [SEP].
    let (status, body) = function
        .post("/v1/embeddings", r#"{"input":"hello world"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    function.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let function = Function::start().await;
    let many: Vec<String> = (0..71).map(|i| format!("text {i}")).collect();
    let long = "word ".repeat(300);
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("/", br#"{"input":""}"#.to_vec(), 400, Some("input[0]")),
        (
            "/",
            br#"{"input":["a",""]}"#.to_vec(),
            400,
            Some("input[1]"),
        ),
        ("/", br#"{"input":[]}"#.to_vec(), 400, Some("input")),
        ("/", br#"{}"#.to_vec(), 400, None),
        ("/", br#"{"input":[1,2]}"#.to_vec(), 400, None),
        ("/", b"{\"input\":\"\xff\xfe\"}".to_vec(), 400, None),
        ("/", b"not json".to_vec(), 400, None),
        ("/", b"".to_vec(), 400, None),
        (
            "/",
            json!({"input": many}).to_string().into_bytes(),
            413,
            Some("input"),
        ),
        // 20 texts of 256 tokens: over the 4000-token limit.
        (
            "/",
            json!({"input": vec![long; 20]}).to_string().into_bytes(),
            413,
            Some("input"),
        ),
        (
            "/v1/embeddings",
            br#"{"model":"text-embedding-3-small","input":"a"}"#.to_vec(),
            400,
            Some("model"),
        ),
        (
            "/v1/embeddings",
            br#"{"input":"a","encoding_format":"base64"}"#.to_vec(),
            400,
            Some("encoding_format"),
        ),
        (
            "/v1/embeddings",
            br#"{"input":"a","dimensions":1536}"#.to_vec(),
            400,
            Some("dimensions"),
        ),
        (
            "/v1/embeddings",
            br#"{"input":[[101,102]]}"#.to_vec(),
            400,
            None,
        ),
        (
            "/v1/embeddings",
            br#"{"input":""}"#.to_vec(),
            400,
            Some("input[0]"),
        ),
        ("/nowhere", br#"{"input":"a"}"#.to_vec(), 404, None),
    ];
    for (path, body, status, param) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let (got, answer) = function.post(path, body).await;
        assert_eq!(got, status, "{path} {shown}: {answer}");
        let error = &answer["error"];
        assert!(
            !error["message"].as_str().unwrap_or_default().is_empty(),
            "{path} {shown}: {answer}"
        );
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{path} {shown}: {answer}");
        }
    }
    // A body over MAX_BODY_BYTES.
    let huge = json!({"input": "x".repeat(300_000)}).to_string();
    let (status, _) = function.post("/", huge).await;
    assert_eq!(status, 413);
    // Still serving after all of it.
    let (status, body) = function.post("/", r#"{"input":"still here"}"#).await;
    assert_eq!(status, 200, "{body}");
    // A field from a newer router is ignored, not refused, so that a rolling
    // deploy can add one.
    let (status, body) = function
        .post("/", r#"{"input":"still here","extra":1}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    function.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_stops_the_function_with_a_message_that_says_how_to_get_it() {
    let empty = tempfile::tempdir().unwrap();
    let (mut command, _) = command(&[("EMBED_MODEL_DIR", empty.path().display().to_string())]);
    let mut child = command.spawn().expect("spawn embed");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("embed exits")
        .unwrap();
    assert!(!status.success());
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(logs.contains("fetch-model.sh"), "{logs}");
    assert!(logs.contains("config.json"), "{logs}");
}

/// The process's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// `n` texts of `bytes` bytes each, of numbered words (digits split into
/// many tokens: the tokeniser's worst case per byte).
fn texts(n: usize, bytes: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut text = String::with_capacity(bytes);
            let mut word = 0;
            while text.len() + 12 < bytes {
                text.push_str(&format!("w{i}x{word} "));
                word += 1;
            }
            text
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_allowed_requests_stay_well_under_the_memory_limit() {
    // The defaults, as stack.yml deploys them (limits.memory 256Mi).
    let function =
        Function::start_with(&[("EMBED_MODEL_DIR", model_dir().display().to_string())]).await;
    let pid = function.child.id().expect("running");
    // Over the byte limits: refused before tokenising.
    let huge = json!({"input": texts(1, 2 * 1024 * 1024 - 4096)}).to_string();
    let (status, body) = function.post("/", huge).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.to_string().contains("EMBED_MAX_INPUT_BYTES"), "{body}");
    // The largest accepted shapes: the most bytes, and the most tokens.
    let widest = json!({"input": texts(16, 16 * 1024)}).to_string();
    let longest = json!({"input": texts(32, 8 * 1024 - 64)}).to_string();
    for request in [&widest, &longest] {
        let (status, body) = function.post("/", request.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    // Three of them at once.
    let (a, b, c) = tokio::join!(
        function.post("/", widest.clone()),
        function.post("/", longest.clone()),
        function.post("/", widest.clone()),
    );
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    let peak_mib = peak_rss_kib(pid) / 1024;
    println!("embed peak RSS under the largest allowed requests: {peak_mib} MiB");
    assert!(
        peak_mib < 256,
        "peak RSS {peak_mib} MiB over stack.yml's 256 MiB limit"
    );
    function.stop().await;
}
