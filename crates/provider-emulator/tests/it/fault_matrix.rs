//! Every fault, on every provider, over HTTP: the provider's own status.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use google_auth::{GoogleAuth, ServiceAccountKey, TokenSource};
use provider_emulator::{ClientSecrets, Emulator, Fault, LatencyModel, ProviderFlavor};
use serde_json::{Value, json};

use crate::common::{client, read_all, start_with_secrets};

/// A non-streamed chat request carrying `prompt`, authenticated as a client would be.
async fn chat_request(
    flavor: ProviderFlavor,
    emu: &Emulator,
    secrets: &ClientSecrets,
    prompt: &str,
) -> reqwest::RequestBuilder {
    let base = emu.base_url();
    let c = client();
    let openai_body = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64});
    match flavor {
        ProviderFlavor::Ollama => c.post(format!("{base}/api/chat")).json(&json!({"model":"llama3.2","messages":[{"role":"user","content":prompt}],"stream":false})),
        ProviderFlavor::Vllm => c.post(format!("{base}/chat/completions")).json(&openai_body("Qwen/Qwen2.5-7B-Instruct")),
        ProviderFlavor::OpenAi | ProviderFlavor::Groq | ProviderFlavor::OpenRouter | ProviderFlavor::DeepSeek | ProviderFlavor::Mistral => {
            let key = secrets.0.values().next().unwrap();
            c.post(format!("{base}/chat/completions")).bearer_auth(key).json(&openai_body("some-model"))
        }
        ProviderFlavor::Anthropic => c
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", secrets.get("anthropic-api-key").unwrap())
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":prompt}]})),
        ProviderFlavor::Gemini => c
            .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
            .header("x-goog-api-key", secrets.get("gemini-api-key").unwrap())
            .json(&json!({"contents":[{"role":"user","parts":[{"text":prompt}]}]})),
        ProviderFlavor::Vertex => {
            let key = ServiceAccountKey::from_json(secrets.get("vertex-service-account").unwrap()).unwrap();
            let auth = GoogleAuth::new(TokenSource::ServiceAccount { token_uri: key.token_uri().to_owned(), key }, http_client::client().unwrap());
            let token = auth.access_token().await.unwrap();
            c.post(format!("{base}/v1/projects/emulator-project/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"))
                .bearer_auth(token.expose())
                .json(&json!({"contents":[{"role":"user","parts":[{"text":prompt}]}]}))
        }
        ProviderFlavor::Bedrock => c
            .post(format!("{base}/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/converse"))
            .bearer_auth(secrets.get("bedrock-api-key").unwrap())
            .json(&json!({"messages":[{"role":"user","content":[{"text":prompt}]}]})),
    }
}

fn expected_status(flavor: ProviderFlavor, fault: Fault) -> u16 {
    use ProviderFlavor as P;
    match (fault, flavor) {
        (Fault::RateLimit, _) => 429,
        (Fault::QuotaExhausted, P::OpenRouter | P::DeepSeek) => 402,
        (Fault::QuotaExhausted, P::Bedrock) => 400,
        (Fault::QuotaExhausted, _) => 429,
        (Fault::ServerError | Fault::StreamError, _) => 500,
        (Fault::Unavailable, _) => 503,
        (Fault::Overloaded, P::OpenRouter) => 502,
        (Fault::Overloaded | Fault::CapacityExceeded, P::Anthropic) => 529,
        (Fault::Overloaded, _) => 503,
        (Fault::CapacityExceeded, P::Groq) => 498,
        (Fault::CapacityExceeded, P::Bedrock) => 429,
        (Fault::CapacityExceeded, _) => 503,
        (Fault::RequestTooLarge, P::Ollama | P::Vertex | P::Gemini | P::Bedrock) => 400,
        (Fault::RequestTooLarge, P::OpenAi) => 429,
        (Fault::RequestTooLarge, _) => 413,
        (Fault::ContextTooLong, _) => 400,
        (Fault::AuthFailure, P::Gemini) => 400,
        (Fault::AuthFailure, P::Bedrock) => 403,
        (Fault::AuthFailure, _) => 401,
        (Fault::Hang | Fault::ConnectionReset | Fault::StreamCut | Fault::MalformedJson, _) => 200,
    }
}

#[tokio::test]
async fn every_fault_gets_each_providers_own_status() {
    for flavor in ProviderFlavor::ALL {
        let (emu, secrets) = start_with_secrets(flavor).await;
        let ok = chat_request(flavor, &emu, &secrets, "hello")
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{flavor} success");
        for fault in Fault::ALL {
            if fault == Fault::Hang {
                continue;
            }
            let prompt = format!("please [[emulator:{fault}]]");
            let sent = chat_request(flavor, &emu, &secrets, &prompt)
                .await
                .send()
                .await;
            match fault {
                Fault::ConnectionReset => assert!(sent.is_err(), "{flavor} {fault}"),
                Fault::StreamCut => {
                    let resp = sent.unwrap();
                    assert_eq!(resp.status(), 200, "{flavor} {fault}");
                    assert!(
                        read_all(resp).await.is_err(),
                        "{flavor} {fault}: body is cut"
                    );
                }
                Fault::MalformedJson => {
                    let resp = sent.unwrap();
                    assert_eq!(resp.status(), 200, "{flavor} {fault}");
                    let bytes = resp.bytes().await.unwrap();
                    assert!(
                        serde_json::from_slice::<Value>(&bytes).is_err(),
                        "{flavor} {fault}"
                    );
                }
                _ => {
                    let resp = sent.unwrap();
                    assert_eq!(
                        resp.status().as_u16(),
                        expected_status(flavor, fault),
                        "{flavor} {fault}"
                    );
                    let body: Value = resp.json().await.unwrap();
                    assert!(
                        body.to_string().contains("error") || body.get("message").is_some(),
                        "{flavor} {fault}: {body}"
                    );
                }
            }
        }
        let stats = emu.stats();
        assert_eq!(
            stats.faults.values().sum::<u64>(),
            Fault::ALL.len() as u64 - 1,
            "{flavor}"
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn shutdown_ends_a_slow_stream_in_flight() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Anthropic).await;
    // One token per minute: the stream would take hours.
    emu.set_latency(LatencyModel::fixed(0.0, Some(1.0 / 60.0)));
    let resp = client()
        .post(format!("{}/v1/messages", emu.base_url()))
        .header("x-api-key", secrets.get("anthropic-api-key").unwrap())
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    emu.shutdown().await;
    assert!(
        read_all(resp).await.is_err(),
        "the stream is cut, not completed"
    );
}

#[tokio::test]
async fn planned_rates_are_seeded_and_reset_restores_them() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    emu.set_faults(provider_emulator::FaultPlan::rate(Fault::ServerError, 0.5));
    let mut first = Vec::new();
    for _ in 0..20 {
        first.push(
            chat_request(ProviderFlavor::OpenAi, &emu, &secrets, "x")
                .await
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    emu.reset();
    assert_eq!(
        emu.faults(),
        provider_emulator::FaultPlan::none(),
        "reset restores the configured plan"
    );
    assert_eq!(emu.stats().total_requests, 0);
    emu.shutdown().await;
}
