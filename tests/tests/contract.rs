//! Contract tests: routing-core's provider clients against each provider's
//! emulator, for success, streaming, and every error class, with the
//! credentials checked the way each provider checks them.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_tests::start_emulator;
use futures_util::StreamExt;
use provider_emulator::{Emulator, ProviderFlavor};
use providers::{
    CallScope, ChatChunk, ChatRequest, EmbedRequest, Message, ProviderError, Providers,
};
use routing_core::env::Env;
use secrets::SecretStore;
use tokio::time::Instant;

/// Whether `e` is of a class worth trying again: the classes a fault of
/// the moment maps to, as opposed to the request's or the account's own.
fn transient(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::RateLimited { .. }
            | ProviderError::Overloaded { .. }
            | ProviderError::Upstream { .. }
            | ProviderError::Timeout
            | ProviderError::Transport { .. }
    )
}

/// name, flavor, base-URL variable, a model it serves.
const PROVIDERS: [(&str, ProviderFlavor, &str, &str); 11] = [
    (
        "ollama",
        ProviderFlavor::Ollama,
        "OLLAMA_BASE_URL",
        "llama3.2",
    ),
    (
        "groq",
        ProviderFlavor::Groq,
        "GROQ_BASE_URL",
        "llama-3.1-8b-instant",
    ),
    (
        "openai",
        ProviderFlavor::OpenAi,
        "OPENAI_BASE_URL",
        "gpt-4o-mini",
    ),
    (
        "openrouter",
        ProviderFlavor::OpenRouter,
        "OPENROUTER_BASE_URL",
        "openai/gpt-4o-mini",
    ),
    (
        "deepseek",
        ProviderFlavor::DeepSeek,
        "DEEPSEEK_BASE_URL",
        "deepseek-chat",
    ),
    (
        "mistral",
        ProviderFlavor::Mistral,
        "MISTRAL_BASE_URL",
        "mistral-small-latest",
    ),
    (
        "vllm",
        ProviderFlavor::Vllm,
        "VLLM_BASE_URL",
        "Qwen/Qwen2.5-7B-Instruct",
    ),
    (
        "vertex",
        ProviderFlavor::Vertex,
        "VERTEX_BASE_URL",
        "gemini-2.5-flash",
    ),
    (
        "gemini",
        ProviderFlavor::Gemini,
        "GEMINI_BASE_URL",
        "gemini-2.5-flash",
    ),
    (
        "anthropic",
        ProviderFlavor::Anthropic,
        "ANTHROPIC_BASE_URL",
        "claude-haiku-4-5",
    ),
    (
        "bedrock",
        ProviderFlavor::Bedrock,
        "BEDROCK_BASE_URL",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
];

struct Rig {
    providers: Providers,
    emulators: BTreeMap<&'static str, Emulator>,
    secret_values: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "VERTEX_PROJECT".to_owned(),
        provider_emulator::credentials::TEST_PROJECT_ID.to_owned(),
    )];
    let mut emulators = BTreeMap::new();
    let mut secret_values = Vec::new();
    for (name, flavor, variable, _) in PROVIDERS {
        let (emulator, secrets) = start_emulator(flavor).await;
        for (secret, value) in secrets {
            std::fs::write(dir.path().join(&secret), &value).unwrap();
            secret_values.push(value);
        }
        env.push((variable.to_owned(), emulator.base_url()));
        emulators.insert(name, emulator);
    }
    let providers = Providers::from_env(
        &Env::from_pairs(env),
        &SecretStore::new(dir.path()),
        http_client::client().unwrap(),
    )
    .unwrap();
    Rig {
        providers,
        emulators,
        secret_values,
        _dir: dir,
    }
}

fn chat(model: &str, prompt: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message::user(prompt)],
        max_tokens: Some(2048),
        temperature: None,
        stop: Vec::new(),
        options: Default::default(),
        logprobs: false,
    }
}

fn cx(timeout: Duration) -> CallScope<'static> {
    CallScope {
        call_id: "contract",
        deadline: Instant::now() + timeout,
    }
}

impl Rig {
    async fn fail(&self, name: &str, model: &str, fault: &str) -> ProviderError {
        let provider = self.providers.get(name).unwrap();
        let request = chat(model, &format!("[[emulator:{fault}]] please answer"));
        // Only a hang waits for the deadline; keep it short.
        let timeout = if fault == "hang" {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        };
        let error = provider
            .chat(&request, &cx(timeout))
            .await
            .expect_err(&format!("{name}: {fault} must fail"));
        let shown = format!("{error:?} {error}");
        for secret in &self.secret_values {
            assert!(
                !shown.contains(secret.as_str()),
                "{name}: a secret leaked into {shown}"
            );
        }
        error
    }

    async fn stream_failure(&self, name: &str, model: &str, fault: &str) -> ProviderError {
        let provider = self.providers.get(name).unwrap();
        let request = chat(model, &format!("[[emulator:{fault}]] please stream"));
        let mut stream = match provider
            .chat_stream(&request, &cx(Duration::from_secs(5)))
            .await
        {
            Ok(stream) => stream,
            Err(error) => return error,
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(ChatChunk::Delta { .. }) => {}
                Ok(ChatChunk::Done { .. }) => panic!("{name}: {fault} stream ended as if complete"),
                Err(error) => return error,
            }
        }
        panic!("{name}: {fault} stream ended without an error")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_succeeds_and_streams_with_usage() {
    let rig = rig().await;
    for (name, _, _, model) in PROVIDERS {
        let provider = rig.providers.get(name).unwrap();
        let answer = provider
            .chat(
                &chat(model, "Tell me about rivers."),
                &cx(Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!answer.text.is_empty(), "{name}");
        assert!(
            answer.usage.input_tokens > 0 && answer.usage.output_tokens > 0,
            "{name}: {:?}",
            answer.usage
        );

        let mut stream = provider
            .chat_stream(
                &chat(model, "Tell me about lakes."),
                &cx(Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut text = String::new();
        let mut done = None;
        while let Some(item) = stream.next().await {
            match item.unwrap_or_else(|e| panic!("{name}: {e}")) {
                ChatChunk::Delta { text: t } => text.push_str(&t),
                ChatChunk::Done { usage, .. } => done = Some(usage),
            }
        }
        let usage = done.unwrap_or_else(|| panic!("{name}: no usage at the end of the stream"));
        assert!(
            !text.is_empty() && usage.output_tokens > 0,
            "{name}: {usage:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_where_the_provider_has_them() {
    let rig = rig().await;
    for (name, model) in [
        ("ollama", "all-minilm"),
        ("openai", "text-embedding-3-small"),
        ("mistral", "mistral-embed"),
    ] {
        let answer = rig
            .providers
            .get(name)
            .unwrap()
            .embed(
                &EmbedRequest {
                    model: model.to_owned(),
                    inputs: vec!["a".into(), "b c".into()],
                },
                &cx(Duration::from_secs(5)),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.embeddings.len(), 2, "{name}");
        let norm: f32 = answer.embeddings[0]
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{name}: {norm}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class_is_recognised_for_every_provider() {
    let rig = rig().await;
    for (name, flavor, _, model) in PROVIDERS {
        let local = matches!(flavor, ProviderFlavor::Ollama | ProviderFlavor::Vllm);

        let e = rig.fail(name, model, "rate_limit").await;
        assert!(
            matches!(e, ProviderError::RateLimited { .. }),
            "{name}: {e:?}"
        );
        if matches!(
            flavor,
            ProviderFlavor::OpenAi
                | ProviderFlavor::Groq
                | ProviderFlavor::Anthropic
                | ProviderFlavor::Gemini
        ) {
            assert!(
                e.retry_after().is_some(),
                "{name}: the provider said when to retry: {e:?}"
            );
        }

        if !local {
            let e = rig.fail(name, model, "quota_exhausted").await;
            assert!(
                matches!(e, ProviderError::QuotaExhausted { .. }),
                "{name}: {e:?}"
            );
            assert!(!transient(&e));
            let e = rig.fail(name, model, "auth_failure").await;
            assert!(matches!(e, ProviderError::Auth { .. }), "{name}: {e:?}");
        }

        let e = rig.fail(name, model, "context_too_long").await;
        assert!(
            matches!(e, ProviderError::ContextTooLong { .. }),
            "{name}: {e:?}"
        );
        assert!(!transient(&e));

        for fault in [
            "server_error",
            "unavailable",
            "overloaded",
            "capacity_exceeded",
        ] {
            let e = rig.fail(name, model, fault).await;
            assert!(transient(&e), "{name}: {fault} must be retryable: {e:?}");
        }
        if flavor == ProviderFlavor::Anthropic {
            let e = rig.fail(name, model, "overloaded").await;
            assert!(
                matches!(e, ProviderError::Overloaded { .. }),
                "{name}: 529 is overload: {e:?}"
            );
        }
        if flavor == ProviderFlavor::Groq {
            let e = rig.fail(name, model, "request_too_large").await;
            assert!(!transient(&e), "groq 413 is not retryable: {e:?}");
        }

        let e = rig.fail(name, model, "hang").await;
        assert_eq!(e, ProviderError::Timeout, "{name}");
        let e = rig.fail(name, model, "connection_reset").await;
        assert!(
            matches!(e, ProviderError::Transport { .. }),
            "{name}: {e:?}"
        );
        let e = rig.fail(name, model, "malformed_json").await;
        assert!(matches!(e, ProviderError::Decode { .. }), "{name}: {e:?}");

        let e = rig.stream_failure(name, model, "stream_cut").await;
        assert!(transient(&e), "{name}: a cut stream may be retried: {e:?}");
        let e = rig.stream_failure(name, model, "stream_error").await;
        assert!(
            !matches!(e, ProviderError::Decode { .. }),
            "{name}: an in-stream error is the provider's, not a parse failure: {e:?}"
        );
    }
    for emulator in rig.emulators.into_values() {
        emulator.shutdown().await;
    }
}
