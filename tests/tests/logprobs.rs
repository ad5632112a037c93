//! Token log-probabilities and seeds over every wire protocol that has
//! them: the provider clients ask, the emulators answer in the provider's
//! own shape, and the answer carries them in one form.

use std::time::Duration;

use fleet_tests::start_emulator;
use provider_emulator::ProviderFlavor;
use providers::{CallScope, ChatRequest, Message, Providers};
use routing_core::env::Env;
use secrets::SecretStore;
use tokio::time::Instant;

/// Provider, flavor, base-URL variable, model, whether it returns
/// log-probabilities.
const PROVIDERS: [(&str, ProviderFlavor, &str, &str, bool); 9] = [
    (
        "ollama",
        ProviderFlavor::Ollama,
        "OLLAMA_BASE_URL",
        "llama3.2",
        true,
    ),
    (
        "openai",
        ProviderFlavor::OpenAi,
        "OPENAI_BASE_URL",
        "gpt-4o-mini",
        true,
    ),
    (
        "openrouter",
        ProviderFlavor::OpenRouter,
        "OPENROUTER_BASE_URL",
        "openai/gpt-4o-mini",
        true,
    ),
    (
        "deepseek",
        ProviderFlavor::DeepSeek,
        "DEEPSEEK_BASE_URL",
        "deepseek-chat",
        true,
    ),
    (
        "vllm",
        ProviderFlavor::Vllm,
        "VLLM_BASE_URL",
        "Qwen/Qwen2.5-7B-Instruct",
        true,
    ),
    (
        "vertex",
        ProviderFlavor::Vertex,
        "VERTEX_BASE_URL",
        "gemini-2.5-flash",
        true,
    ),
    (
        "gemini",
        ProviderFlavor::Gemini,
        "GEMINI_BASE_URL",
        "gemini-2.5-flash",
        true,
    ),
    (
        "groq",
        ProviderFlavor::Groq,
        "GROQ_BASE_URL",
        "llama-3.1-8b-instant",
        false,
    ),
    (
        "mistral",
        ProviderFlavor::Mistral,
        "MISTRAL_BASE_URL",
        "mistral-small-latest",
        false,
    ),
];

fn chat(model: &str, prompt: &str, seed: Option<u64>) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![Message::user(prompt)],
        max_tokens: Some(256),
        temperature: Some(0.7),
        stop: Vec::new(),
        options: providers::GenerationOptions {
            seed: seed.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            ..Default::default()
        },
        logprobs: true,
    }
}

fn cx() -> CallScope<'static> {
    CallScope {
        call_id: "logprobs",
        deadline: Instant::now() + Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_with_logprobs_reports_them_and_seeds_vary_unstable_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "VERTEX_PROJECT".to_owned(),
        provider_emulator::credentials::TEST_PROJECT_ID.to_owned(),
    )];
    let mut emulators = Vec::new();
    for (_, flavor, variable, _, _) in PROVIDERS {
        let (emulator, secrets) = start_emulator(flavor).await;
        for (secret, value) in secrets {
            std::fs::write(dir.path().join(&secret), &value).unwrap();
        }
        env.push((variable.to_owned(), emulator.base_url()));
        emulators.push(emulator);
    }
    let providers = Providers::from_env(
        &Env::from_pairs(env),
        &SecretStore::new(dir.path()),
        http_client::client().unwrap(),
    )
    .unwrap();
    for (name, _, _, model, returns) in PROVIDERS {
        let provider = providers.get(name).unwrap();
        let sure = provider
            .chat(&chat(model, "Name the capital of France.", None), &cx())
            .await
            .expect(name);
        let unsure = provider
            .chat(
                &chat(
                    model,
                    "Name the capital of France. [[emulator:confidence=0.2]]",
                    None,
                ),
                &cx(),
            )
            .await
            .expect(name);
        if !returns {
            assert_eq!(sure.logprobs, None, "{name}");
            assert_eq!(unsure.logprobs, None, "{name}");
            continue;
        }
        let sure = sure.logprobs.expect(name);
        // Gemini's answers carry only the mean (avgLogprobs).
        let per_token = !matches!(name, "vertex" | "gemini");
        assert_eq!(
            !sure.tokens.is_empty(),
            per_token,
            "{name}: per-token values"
        );
        assert!(sure.confidence() > 0.9, "{name}: {sure:?}");
        let unsure = unsure.logprobs.expect(name);
        assert!(
            (0.1..0.3).contains(&unsure.confidence()),
            "{name}: {}",
            unsure.confidence()
        );

        // Samples of a stable answer agree whatever the seed; an unstable
        // one's differ.
        let stable = [None, Some(11)].map(|seed| chat(model, "Name a colour.", seed));
        let a = provider.chat(&stable[0], &cx()).await.expect(name);
        let b = provider.chat(&stable[1], &cx()).await.expect(name);
        assert_eq!(a.text, b.text, "{name}");
        // A second sample asks with another seed and temperature (DeepSeek
        // takes no seed).
        let mut unstable =
            [None, Some(11)].map(|seed| chat(model, "Name a colour. [[emulator:unstable]]", seed));
        unstable[1].temperature = Some(1.0);
        let a = provider.chat(&unstable[0], &cx()).await.expect(name);
        let b = provider.chat(&unstable[1], &cx()).await.expect(name);
        assert_ne!(a.text, b.text, "{name}: the seed reached the server");
    }
    for emulator in emulators {
        emulator.shutdown().await;
    }
}
