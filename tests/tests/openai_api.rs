//! llm-router's OpenAI-compatible API through the fleet: every mapped
//! field reaches the provider in the provider's own form (as the emulator
//! recorded it), a misspelt field never reaches a provider, and failures
//! carry OpenAI's statuses, codes and `Retry-After`.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]

use fleet_tests::{Answer, Fleet, FleetOptions};
use provider_emulator::StatsSnapshot;
use serde_json::{Value, json};

/// POSTs an OpenAI chat completion to llm-router.
async fn chat(fleet: &Fleet, body: Value) -> Answer {
    let response = fleet
        .http
        .post(fleet.url("llm-router", "/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
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

/// The body of the last generation request an emulator received.
fn last_chat_body(stats: &StatsSnapshot) -> Value {
    let recorded = stats
        .recent
        .iter()
        .rev()
        .find(|r| {
            r.method == "POST" && !r.path.starts_with("/_emulator") && !r.path.ends_with("/token")
        })
        .expect("the emulator got a generation request");
    serde_json::from_str(&recorded.body).expect("a JSON body")
}

fn chat_requests(stats: &StatsSnapshot) -> u64 {
    stats
        .by_path
        .iter()
        .filter(|(path, _)| !path.starts_with("/_emulator") && !path.ends_with("/token"))
        .map(|(_, n)| n)
        .sum()
}

/// The sampling settings every test request carries, on a pinned model.
fn sampled(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "max_completion_tokens": 50, "temperature": 0.5, "top_p": 0.5, "seed": 42,
        "presence_penalty": 0.25, "frequency_penalty": -0.5, "user": "u-1",
        "stop": ["END"], "n": 1, "max_latency_ms": 10000
    });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_fields_reach_each_provider_in_its_own_form() {
    let fleet = Fleet::start(FleetOptions::default()).await;

    let answer = chat(&fleet, sampled("groq/llama-3.1-8b-instant", json!({}))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let groq = last_chat_body(&fleet.groq.stats());
    for (field, want) in [
        ("max_tokens", json!(50)),
        ("temperature", json!(0.5)),
        ("top_p", json!(0.5)),
        ("seed", json!(42)),
        ("presence_penalty", json!(0.25)),
        ("frequency_penalty", json!(-0.5)),
        ("user", json!("u-1")),
        ("stop", json!(["END"])),
    ] {
        assert_eq!(groq[field], want, "groq {field}: {groq}");
    }

    let answer = chat(&fleet, sampled("vertex/gemini-2.5-flash", json!({}))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let config = &last_chat_body(&fleet.vertex.stats())["generationConfig"];
    assert_eq!(
        config,
        &json!({"temperature": 0.5, "maxOutputTokens": 50, "stopSequences": ["END"],
                "topP": 0.5, "seed": 42, "presencePenalty": 0.25, "frequencyPenalty": -0.5}),
    );

    // Claude takes temperature or top_p: without temperature, top_p goes.
    let mut body = sampled("anthropic/claude-haiku-4-5", json!({}));
    body.as_object_mut()
        .expect("an object")
        .remove("temperature");
    let answer = chat(&fleet, body).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let anthropic = last_chat_body(&fleet.emulator("anthropic").stats());
    assert_eq!(anthropic["top_p"], 0.5, "{anthropic}");
    assert_eq!(
        anthropic["metadata"],
        json!({"user_id": "u-1"}),
        "{anthropic}"
    );
    assert_eq!(anthropic["stop_sequences"], json!(["END"]), "{anthropic}");
    assert_eq!(anthropic["max_tokens"], 50, "{anthropic}");

    let answer = chat(&fleet, sampled("auto", json!({"private": true}))).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        answer.json["x_route"]["provider"], "ollama",
        "{}",
        answer.json
    );
    let options = &last_chat_body(&fleet.ollama.stats())["options"];
    assert_eq!(
        options,
        &json!({"temperature": 0.5, "num_predict": 50, "stop": ["END"], "top_p": 0.5,
                "seed": 42, "presence_penalty": 0.25, "frequency_penalty": -0.5}),
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_or_unsupported_field_never_reaches_a_provider() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let marker = "misspelt-private-7d2a";
    for (field, value, code) in [
        ("Private", json!(true), "unknown_parameter"),
        ("is_private", json!(true), "unknown_parameter"),
        ("privacy", json!("private"), "unknown_parameter"),
        (
            "functions",
            json!([{"name": "f", "parameters": {}}]),
            "unsupported_parameter",
        ),
        (
            "response_format",
            json!({"type": "json_object"}),
            "unsupported_value",
        ),
    ] {
        let answer = chat(
            &fleet,
            json!({"model": "auto", "messages": [{"role": "user", "content": marker}],
                   field: value}),
        )
        .await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.json);
        let error = &answer.json["error"];
        assert_eq!(error["param"], field, "{error}");
        assert_eq!(error["code"], code, "{error}");
        assert_eq!(error["type"], "invalid_request_error", "{error}");
    }
    for name in ["ollama", "groq", "vertex", "openai", "anthropic", "gemini"] {
        let stats = fleet.emulator(name).stats();
        assert_eq!(chat_requests(&stats), 0, "{name}: {stats:?}");
        assert!(!stats.any_body_contains(marker), "{name}");
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_carry_openais_codes_and_the_wait() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let pinned = |content: &str| {
        json!({"model": "groq/llama-3.1-8b-instant", "max_latency_ms": 10000,
               "messages": [{"role": "user", "content": content}]})
    };

    let limited = chat(&fleet, pinned("hi [[emulator:rate_limit]]")).await;
    assert_eq!(limited.status, 429, "{}", limited.json);
    assert_eq!(limited.json["error"]["code"], "rate_limit_exceeded");
    // Groq's emulator asks for 6 s, as Groq does.
    assert_eq!(
        limited.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"6"[..]),
        "{:?}",
        limited.headers
    );

    // The native API passes the wait on too.
    let native = fleet
        .route(
            json!({"task": "generate", "prompt": "hi [[emulator:rate_limit]]",
                      "model": "groq/llama-3.1-8b-instant", "max_latency_ms": 10000}),
        )
        .await;
    assert_eq!(native.status, 429, "{}", native.json);
    assert_eq!(
        native.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"6"[..])
    );

    let too_long = chat(&fleet, pinned("hi [[emulator:context_too_long]]")).await;
    assert_eq!(too_long.status, 400, "{}", too_long.json);
    assert_eq!(too_long.json["error"]["code"], "context_length_exceeded");
    assert_eq!(too_long.json["error"]["type"], "invalid_request_error");

    let quota = chat(&fleet, pinned("hi [[emulator:quota_exhausted]]")).await;
    assert_eq!(quota.status, 429, "{}", quota.json);
    assert_eq!(quota.json["error"]["code"], "insufficient_quota");
    assert_eq!(
        quota.headers.get("x-should-retry").map(|v| v.as_bytes()),
        Some(&b"false"[..])
    );
    fleet.stop().await;
}
