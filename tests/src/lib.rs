//! A fleet for tests: provider emulators, the four function binaries from
//! `stack.yml` and the dev gateway in front of them, all on ephemeral ports.
//!
//! The function binaries must be built first (`cargo build --workspace
//! --bins`; `scripts/test.sh` does it).
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod redis;

use dev_gateway::{DevGateway, FunctionSpec, RunningGateway, SpecOptions, Stack};
use provider_emulator::{Credentials, Emulator, EmulatorConfig, ProviderFlavor};
use serde_json::Value;

pub mod openfaas;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The folder the workspace binaries are built into: the running binary's
/// own folder, or the parent of a test binary's `deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own binary path");
    let mut dir = exe.parent().expect("target/<profile>/...").to_path_buf();
    // Test binaries live in target/<profile>/deps, binaries in target/<profile>.
    if dir.ends_with("deps") {
        dir.pop();
    }
    for name in ["llm-router", "classify", "embed", "provider-proxy"] {
        assert!(
            dir.join(name).exists(),
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
            dir.join(name).display()
        );
    }
    dir
}

/// What to change from the default fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// Secrets left out of the secrets folder.
    pub omit_secrets: Vec<String>,
    /// Extra environment for every function (overrides stack.yml).
    pub env: BTreeMap<String, String>,
}

/// A running fleet.
pub struct Fleet {
    /// The dev gateway.
    pub gateway: RunningGateway,
    /// In-cluster Ollama.
    pub ollama: Emulator,
    /// Groq.
    pub groq: Emulator,
    /// Vertex Gemini.
    pub vertex: Emulator,
    /// Every other provider's emulator, by provider name.
    pub others: BTreeMap<&'static str, Emulator>,
    /// An HTTP client for calling the gateway as one of the fleet's pods:
    /// it sends the fleet's internal token, so internal functions answer.
    pub http: reqwest::Client,
    /// An HTTP client without the internal token: any other caller.
    pub outsider: reqwest::Client,
    /// The fleet's internal token (the `internal-token` secret).
    pub internal_token: String,
    /// Each function as the gateway runs it (binary and environment).
    pub specs: Vec<FunctionSpec>,
    secrets: tempfile::TempDir,
}

/// The providers beyond the seed three, with the base-URL variable
/// provider-proxy reads for each.
pub const OTHER_PROVIDERS: [(&str, ProviderFlavor, &str); 8] = [
    ("gemini", ProviderFlavor::Gemini, "GEMINI_BASE_URL"),
    ("openai", ProviderFlavor::OpenAi, "OPENAI_BASE_URL"),
    (
        "openrouter",
        ProviderFlavor::OpenRouter,
        "OPENROUTER_BASE_URL",
    ),
    ("deepseek", ProviderFlavor::DeepSeek, "DEEPSEEK_BASE_URL"),
    ("mistral", ProviderFlavor::Mistral, "MISTRAL_BASE_URL"),
    ("vllm", ProviderFlavor::Vllm, "VLLM_BASE_URL"),
    ("anthropic", ProviderFlavor::Anthropic, "ANTHROPIC_BASE_URL"),
    ("bedrock", ProviderFlavor::Bedrock, "BEDROCK_BASE_URL"),
];

/// An HTTP client that sends the fleet's internal token on every request.
fn fleet_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-fleet-token",
        reqwest::header::HeaderValue::from_str(token).expect("a header value"),
    );
    http_client::client_builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// The value of the series `name` (with its labels) in `/metrics` text.
///
/// # Panics
/// When the series is missing or not a number.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed body (`Value::Null` when not JSON).
    pub json: Value,
}

/// Starts one emulator with fresh credentials; returns it and the secrets a
/// client needs, by the fleet's secret names.
pub async fn start_emulator(flavor: ProviderFlavor) -> (Emulator, BTreeMap<String, String>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind emulator");
    let root = format!("http://{}", listener.local_addr().expect("addr"));
    let (credentials, secrets) = Credentials::generate(flavor, &root, 7).expect("credentials");
    let emulator = Emulator::start(
        listener,
        EmulatorConfig::instant(flavor).with_credentials(credentials),
    )
    .await
    .expect("start emulator");
    (emulator, secrets.0)
}

impl Fleet {
    /// Starts emulators and the gateway; functions start on first request.
    pub async fn start(options: FleetOptions) -> Fleet {
        let (ollama, _) = start_emulator(ProviderFlavor::Ollama).await;
        let (groq, groq_secrets) = start_emulator(ProviderFlavor::Groq).await;
        let (vertex, vertex_secrets) = start_emulator(ProviderFlavor::Vertex).await;
        let mut all_secrets: BTreeMap<String, String> = groq_secrets;
        all_secrets.extend(vertex_secrets);
        let mut others = BTreeMap::new();
        for (name, flavor, _) in OTHER_PROVIDERS {
            let (emulator, secrets) = start_emulator(flavor).await;
            all_secrets.extend(secrets);
            others.insert(name, emulator);
        }

        let secrets = tempfile::tempdir().expect("secrets dir");
        let internal_token = format!("fleet-token-{}", std::process::id());
        std::fs::write(secrets.path().join("internal-token"), &internal_token)
            .expect("write the internal token");
        for (name, value) in &all_secrets {
            if !options.omit_secrets.contains(name) {
                std::fs::write(secrets.path().join(name), value).expect("write secret");
            }
        }

        let root = repo_root();
        let stack = Stack::load(&root.join("stack.yml"), &|_| None).expect("stack.yml");
        let mut env_overrides = BTreeMap::from([
            ("OLLAMA_BASE_URL".to_owned(), ollama.base_url()),
            ("GROQ_BASE_URL".to_owned(), groq.base_url()),
            ("VERTEX_BASE_URL".to_owned(), vertex.base_url()),
            (
                "VERTEX_PROJECT".to_owned(),
                provider_emulator::credentials::TEST_PROJECT_ID.to_owned(),
            ),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            ("healthcheck_interval".to_owned(), "1s".to_owned()),
            ("write_timeout".to_owned(), "10s".to_owned()),
            // Routes are deterministic unless a test asks for exploration.
            ("LEARNING_EXPLORE_SHARE".to_owned(), "0".to_owned()),
        ]);
        for (name, _, variable) in OTHER_PROVIDERS {
            env_overrides.insert(variable.to_owned(), others[name].base_url());
        }
        // The embed function's model, where scripts/fetch-model.sh puts it.
        let model_dir = root.join("functions/embed/assets/model");
        if model_dir.join("model.safetensors").exists() {
            env_overrides.insert(
                "EMBED_MODEL_DIR".to_owned(),
                model_dir.display().to_string(),
            );
        }
        env_overrides.extend(options.env);
        let mut specs = FunctionSpec::from_stack(
            &stack,
            &SpecOptions {
                bin_dir: bin_dir(),
                env_overrides,
                idle_override: None,
            },
        )
        .expect("function specs");
        // stack.yml lists the seed providers' secrets; a deployment that
        // uses more providers lists theirs too.
        for spec in specs.iter_mut().filter(|s| s.name == "provider-proxy") {
            spec.secrets.extend(all_secrets.keys().cloned());
            spec.secrets.sort();
            spec.secrets.dedup();
        }
        let mut gateway = DevGateway::new(specs.clone());
        gateway.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        gateway.secrets_dir = Some(secrets.path().to_path_buf());
        gateway.startup_timeout = Duration::from_secs(20);
        let gateway = gateway.start().await.expect("start dev gateway");
        Fleet {
            gateway,
            ollama,
            groq,
            vertex,
            others,
            http: fleet_client(&internal_token),
            outsider: http_client::client().expect("an HTTP client"),
            internal_token,
            specs,
            secrets,
        }
    }

    /// The emulator of a provider, by name.
    pub fn emulator(&self, provider: &str) -> &Emulator {
        match provider {
            "ollama" => &self.ollama,
            "groq" => &self.groq,
            "vertex" => &self.vertex,
            other => &self.others[other],
        }
    }

    /// `http://127.0.0.1:PORT/function/<name><path>`.
    pub fn url(&self, function: &str, path: &str) -> String {
        format!("{}/function/{function}{path}", self.gateway.url())
    }

    /// The secrets folder.
    pub fn secrets_dir(&self) -> &Path {
        self.secrets.path()
    }

    /// POSTs a raw body to a function through the gateway.
    pub async fn post(&self, function: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .http
            .post(self.url(function, ""))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        Answer {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// POSTs JSON to llm-router.
    pub async fn route(&self, request: Value) -> Answer {
        self.post("llm-router", request.to_string()).await
    }

    /// Provider requests all emulators received (their admin and token
    /// calls aside).
    pub fn provider_requests(&self) -> u64 {
        ["ollama", "groq", "vertex"]
            .into_iter()
            .chain(self.others.keys().copied())
            .map(|name| {
                self.emulator(name)
                    .stats()
                    .by_path
                    .iter()
                    .filter(|(path, _)| {
                        !path.starts_with("/_emulator") && !path.ends_with("/token")
                    })
                    .map(|(_, n)| n)
                    .sum::<u64>()
            })
            .sum()
    }

    /// A function's Prometheus exposition, through the gateway.
    pub async fn metrics(&self, function: &str) -> String {
        self.http
            .get(self.url(function, "/metrics"))
            .send()
            .await
            .expect("gateway answers")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the gateway (and every function process) and the emulators.
    pub async fn stop(self) {
        self.gateway.shutdown().await.expect("gateway shutdown");
        self.ollama.shutdown().await;
        self.groq.shutdown().await;
        self.vertex.shutdown().await;
        for (_, emulator) in self.others {
            emulator.shutdown().await;
        }
    }
}
