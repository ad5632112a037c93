//! provider-proxy against every provider's emulator, through the gateway:
//! answers, streaming, usage and cost from the catalogue.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use fleet_tests::{Fleet, FleetOptions};
use serde_json::{Value, json};

const MODELS: [(&str, &str); 11] = [
    ("ollama", "llama3.2"),
    ("groq", "llama-3.1-8b-instant"),
    ("vertex", "gemini-2.5-flash"),
    ("gemini", "gemini-2.5-flash"),
    ("openai", "gpt-4o-mini"),
    ("openrouter", "openai/gpt-4o-mini"),
    ("deepseek", "deepseek-chat"),
    ("mistral", "mistral-small-latest"),
    ("vllm", "Qwen/Qwen2.5-7B-Instruct"),
    ("anthropic", "claude-haiku-4-5"),
    ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"),
];

fn request(provider: &str, model: &str, prompt: &str, stream: bool) -> String {
    json!({
        "provider": provider, "model": model, "task": "generate",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 2048, "stream": stream
    })
    .to_string()
}

fn expected_cost(provider: &str, model: &str, usage: &Value) -> Option<f64> {
    let catalogue = routing_core::pricing::Catalogue::builtin().unwrap();
    let price = catalogue.price(provider, model)?;
    let n = |f: &str| usage[f].as_u64().unwrap() as f64;
    let cached = n("cached_input_tokens");
    let written = n("cache_write_tokens");
    let uncached = n("input_tokens") - cached - written;
    Some(
        (uncached * price.input
            + cached * price.cached_input.unwrap_or(price.input)
            + written * price.cache_write.unwrap_or(price.input)
            + n("output_tokens") * price.output)
            / 1e6,
    )
}

async fn stream_events(fleet: &Fleet, body: String) -> Vec<Value> {
    let response = fleet
        .http
        .post(fleet.url("provider-proxy", ""))
        .header("accept", "text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let data = frame.strip_prefix("data: ").expect("data frame");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_answers_with_usage_priced_from_the_catalogue() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for (provider, model) in MODELS {
        let prompt = format!("Say something about {provider}.");
        let answer = fleet
            .post("provider-proxy", request(provider, model, &prompt, false))
            .await;
        assert_eq!(answer.status, 200, "{provider}: {}", answer.json);
        let body = &answer.json;
        assert_eq!(body["provider"], provider);
        assert!(!body["text"].as_str().unwrap().is_empty(), "{provider}");
        let usage = &body["usage"];
        assert!(
            usage["input_tokens"].as_u64().unwrap() > 0,
            "{provider}: {usage}"
        );
        assert!(
            usage["output_tokens"].as_u64().unwrap() > 0,
            "{provider}: {usage}"
        );
        let expected = expected_cost(provider, model, usage);
        match (expected, body["cost_usd"].as_f64()) {
            (Some(e), Some(c)) => assert!((e - c).abs() < 1e-12, "{provider}: {c} vs {e}"),
            (None, None) => {}
            (e, c) => panic!("{provider}: cost {c:?}, catalogue says {e:?}"),
        }
        let received = fleet.emulator(provider).stats();
        assert!(
            received.any_body_contains(&prompt),
            "{provider} did not receive the prompt"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_streams_the_same_text_with_usage_from_the_stream() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for (provider, model) in MODELS {
        let whole = fleet
            .post(
                "provider-proxy",
                request(provider, model, "Stream me a story.", false),
            )
            .await;
        assert_eq!(whole.status, 200, "{provider}: {}", whole.json);
        let events =
            stream_events(&fleet, request(provider, model, "Stream me a story.", true)).await;
        let (last, deltas) = events.split_last().expect("at least one event");
        assert_eq!(last["type"], "done", "{provider}: {last}");
        assert!(deltas.iter().all(|e| e["type"] == "delta"), "{provider}");
        assert!(deltas.len() > 1, "{provider}: one delta is not a stream");
        let streamed: String = deltas.iter().map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(streamed, whole.json["text"].as_str().unwrap(), "{provider}");
        assert_eq!(
            last["usage"]["output_tokens"], whole.json["usage"]["output_tokens"],
            "{provider}"
        );
        match (
            last["cost_usd"].as_f64(),
            expected_cost(provider, model, &last["usage"]),
        ) {
            (Some(c), Some(e)) => assert!((c - e).abs() < 1e-12, "{provider}: {c} vs {e}"),
            (c, e) => assert_eq!(c, e, "{provider}"),
        }
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failure_mid_stream_ends_with_an_error_event() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let events = stream_events(
        &fleet,
        request(
            "groq",
            "llama-3.1-8b-instant",
            "[[emulator:stream_cut]] go on",
            true,
        ),
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    assert!(events.iter().all(|e| e["type"] != "done"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_proxy_refuses_to_send_a_private_request_outside_the_cluster() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for (provider, model) in MODELS {
        let body = json!({
            "provider": provider, "model": model, "task": "generate", "private": true,
            "messages": [{"role": "user", "content": "private-proxy-marker"}]
        })
        .to_string();
        let answer = fleet.post("provider-proxy", body).await;
        let in_cluster = matches!(provider, "ollama" | "vllm");
        if in_cluster {
            assert_eq!(answer.status, 200, "{provider}: {}", answer.json);
        } else {
            assert_eq!(answer.status, 403, "{provider}: {}", answer.json);
            assert_eq!(answer.json["error"]["type"], "private_request_refused");
            assert!(
                !fleet
                    .emulator(provider)
                    .stats()
                    .any_body_contains("private-proxy-marker")
            );
        }
    }
    fleet.stop().await;
}

/// Through llm-router: each provider kind is reached when the policy sends
/// the request there (here by pinning a catalogue model), and the cost in
/// the answer is the reported tokens times the catalogue price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_reaches_every_provider_kind_and_prices_it() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let pinned = [
        ("ollama/local", "ollama", "llama3.2"),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("vertex/gemini-2.5-flash", "vertex", "gemini-2.5-flash"),
        ("gemini/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        (
            "anthropic/claude-haiku-4-5",
            "anthropic",
            "claude-haiku-4-5",
        ),
        (
            "bedrock/claude-haiku-4-5",
            "bedrock",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
    ];
    for (id, provider, model) in pinned {
        let answer = fleet
            .route(
                json!({"task":"generate","prompt":format!("Hello {provider}"),
                          "model":id,"max_latency_ms":30000,"max_tokens":2048}),
            )
            .await;
        assert_eq!(answer.status, 200, "{id}: {}", answer.json);
        assert_eq!(answer.json["provider"], provider, "{id}");
        assert_eq!(answer.json["route"]["model"], id);
        let expected = expected_cost(provider, model, &answer.json["usage"]).unwrap();
        let cost = answer.json["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - expected).abs() < 1e-12,
            "{id}: {cost} vs {expected}"
        );
        assert!(
            fleet
                .emulator(provider)
                .stats()
                .any_body_contains(&format!("Hello {provider}")),
            "{id}"
        );
    }
    fleet.stop().await;
}
