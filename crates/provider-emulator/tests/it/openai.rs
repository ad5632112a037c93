#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]
use provider_emulator::{Fault, FaultPlan, ProviderFlavor};
use serde_json::{Value, json};

use crate::common::{client, parse_sse, read_all, start_with_secrets};

fn chat_body(content: &str) -> Value {
    json!({"model":"gpt-4o-mini","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":content}],"max_completion_tokens":256})
}

async fn post(url: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(url).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

/// The JSON events of an SSE body, without `[DONE]` and comments.
fn data_events(text: &str) -> Vec<Value> {
    parse_sse(text)
        .into_iter()
        .filter(|(name, data)| name == "message" && data != "[DONE]")
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect()
}

#[tokio::test]
async fn openai_non_stream_success_has_usage_and_headers() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    assert!(emu.base_url().ends_with("/v1"));
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let resp = post(&url, Some(key), &chat_body("Hello!")).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert_eq!(h["openai-version"], "2020-10-01");
    assert!(h.contains_key("x-ratelimit-remaining-tokens"));
    assert!(
        h["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap()
            .ends_with('s')
    );
    assert!(!h.contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["refusal"], Value::Null);
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    // Deterministic answer.
    let again: Value = post(&url, Some(key), &chat_body("Hello!"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["choices"][0]["message"]["content"],
        body["choices"][0]["message"]["content"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_rejects_missing_and_wrong_keys_like_openai() {
    let (emu, _secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let url = format!("{}/chat/completions", emu.base_url());
    let missing = post(&url, None, &chat_body("hi")).await;
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key.")
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], Value::Null);
    assert_eq!(body["error"]["param"], Value::Null);
    let wrong = post(&url, Some("sk-wrong-key-1234567890"), &chat_body("hi")).await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Incorrect API key provided: sk-"));
    assert!(message.contains("7890") && !message.contains("wrong-key"));
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_stream_usage_only_with_include_usage() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let mut body = chat_body("stream please");
    body["stream"] = json!(true);
    let resp = post(&url, Some(key), &body).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let events = data_events(&text);
    assert!(
        events.iter().all(|e| e.get("usage").is_none()),
        "no usage without include_usage"
    );
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    body["stream_options"] = json!({"include_usage": true});
    let text =
        String::from_utf8(read_all(post(&url, Some(key), &body).await).await.unwrap()).unwrap();
    let events = data_events(&text);
    let (usage_chunk, rest) = events.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(
        rest.iter()
            .all(|e| e["usage"].is_null() && e.get("usage").is_some())
    );
    let streamed: String = rest
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    let plain: Value = post(&url, Some(key), &chat_body("stream please"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        streamed,
        plain["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        plain["usage"]["completion_tokens"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_rate_limit_versus_insufficient_quota() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let limited = post(&url, Some(key), &chat_body("[[emulator:rate_limit]]")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "tokens");
    let quota = post(&url, Some(key), &chat_body("[[emulator:quota_exhausted]]")).await;
    assert_eq!(quota.status(), 429);
    assert!(!quota.headers().contains_key("retry-after"));
    let body: Value = quota.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_context_too_long_is_detected_and_injectable() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let mut body = chat_body("hello");
    body["max_completion_tokens"] = json!(200_000);
    let resp = post(&url, Some(key), &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "context_length_exceeded");
    assert_eq!(err["error"]["param"], "messages");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 128000 tokens.")
    );
    let injected = post(&url, Some(key), &chat_body("[[emulator:context_too_long]]")).await;
    assert_eq!(injected.status(), 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_server_errors_malformed_json_and_in_stream_error() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    emu.set_faults(FaultPlan {
        next: vec![Fault::ServerError, Fault::Unavailable, Fault::MalformedJson],
        rates: vec![],
    });
    assert_eq!(post(&url, Some(key), &chat_body("a")).await.status(), 500);
    assert_eq!(post(&url, Some(key), &chat_body("a")).await.status(), 503);
    let bad = post(&url, Some(key), &chat_body("a")).await;
    assert_eq!(bad.status(), 200);
    assert!(serde_json::from_slice::<Value>(&bad.bytes().await.unwrap()).is_err());
    let mut body = chat_body("[[emulator:stream_error]]");
    body["stream"] = json!(true);
    let resp = post(&url, Some(key), &body).await;
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    let events = data_events(&text);
    assert_eq!(events.last().unwrap()["error"]["type"], "server_error");
    assert!(!text.contains("[DONE]"));
    emu.shutdown().await;
}

#[tokio::test]
async fn openai_embeddings_and_models() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenAi).await;
    let key = secrets.get("openai-api-key").unwrap();
    let url = format!("{}/embeddings", emu.base_url());
    let resp: Value = post(
        &url,
        Some(key),
        &json!({"model":"text-embedding-3-small","input":["a b","c d"],"dimensions":512}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(resp["object"], "list");
    assert_eq!(resp["data"][1]["index"], 1);
    assert_eq!(resp["data"][0]["embedding"].as_array().unwrap().len(), 512);
    assert!(resp["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let b64: Value = post(
        &url,
        Some(key),
        &json!({"model":"text-embedding-3-small","input":"a","encoding_format":"base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(b64["data"][0]["embedding"].is_string());
    let models: Value = client()
        .get(format!("{}/models", emu.base_url()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn groq_specifics() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Groq).await;
    assert!(emu.base_url().ends_with("/openai/v1"));
    let key = secrets.get("groq-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let body = json!({"model":"llama-3.1-8b-instant","messages":[{"role":"user","content":"hi"}],"stream":true});
    let resp = post(&url, Some(key), &body).await;
    let reset_tokens = resp.headers()["x-ratelimit-reset-tokens"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(reset_tokens.ends_with('s') && !reset_tokens.contains(' '));
    assert!(!resp.headers().contains_key("retry-after"));
    let text = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    let events = data_events(&text);
    assert!(
        events[0]["x_groq"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        last["x_groq"]["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(last["x_groq"]["usage"]["queue_time"].is_number());

    // The /v1 path without /openai does not exist on Groq.
    let wrong = post(
        &format!("{}/v1/chat/completions", emu.root_url()),
        Some(key),
        &body,
    )
    .await;
    assert_eq!(wrong.status(), 404);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_url"
    );

    let bad_key = post(&url, Some("gsk_nope"), &body).await;
    assert_eq!(bad_key.status(), 401);
    assert_eq!(
        bad_key.json::<Value>().await.unwrap(),
        json!({"error":{"message":"Invalid API Key","type":"invalid_request_error","code":"invalid_api_key"}})
    );

    let limited = post(&url, Some(key), &json!({"model":"llama-3.1-8b-instant","messages":[{"role":"user","content":"[[emulator:rate_limit]]"}]})).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "6");
    let err: Value = limited.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on tokens per minute (TPM)")
    );

    let too_big = post(&url, Some(key), &json!({"model":"llama-3.1-8b-instant","messages":[{"role":"user","content":"hi"}],"max_tokens":300000})).await;
    assert_eq!(too_big.status(), 413);
    let err: Value = too_big.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Request too large")
    );

    let flex = post(&url, Some(key), &json!({"model":"llama-3.1-8b-instant","messages":[{"role":"user","content":"[[emulator:capacity_exceeded@groq]]"}]})).await;
    assert_eq!(flex.status().as_u16(), 498);
    assert_eq!(
        flex.json::<Value>().await.unwrap()["error"]["code"],
        "capacity_exceeded"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn openrouter_keep_alive_in_stream_error_and_credits() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::OpenRouter).await;
    assert!(emu.base_url().ends_with("/api/v1"));
    let key = secrets.get("openrouter-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let body = json!({"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true});
    let resp = post(&url, Some(key), &body).await;
    assert!(resp.headers().contains_key("x-generation-id"));
    let text = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    assert!(text.starts_with(": OPENROUTER PROCESSING\n\n"));
    let events = data_events(&text);
    assert!(
        events.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let failing = json!({"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"[[emulator:stream_error]]"}],"stream":true});
    let resp = post(&url, Some(key), &failing).await;
    assert_eq!(resp.status(), 200);
    let events = data_events(&String::from_utf8(read_all(resp).await.unwrap()).unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "error");
    assert!(last["error"]["message"].is_string());

    let broke = post(
        &url,
        Some(key),
        &json!({"model":"x","messages":[{"role":"user","content":"[[emulator:quota_exhausted]]"}]}),
    )
    .await;
    assert_eq!(broke.status(), 402);
    assert_eq!(broke.json::<Value>().await.unwrap()["error"]["code"], 402);
    let missing = post(&url, None, &body).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["message"],
        "No auth credentials found"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn deepseek_keep_alive_and_cache_usage() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::DeepSeek).await;
    let key = secrets.get("deepseek-api-key").unwrap();
    let body = json!({"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}]});
    for path in ["/chat/completions", "/v1/chat/completions"] {
        let resp: Value = post(&format!("{}{path}", emu.base_url()), Some(key), &body)
            .await
            .json()
            .await
            .unwrap();
        let usage = &resp["usage"];
        assert_eq!(usage["prompt_cache_miss_tokens"], usage["prompt_tokens"]);
        assert_eq!(usage["prompt_cache_hit_tokens"], 0);
    }
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let text = String::from_utf8(
        read_all(
            post(
                &format!("{}/chat/completions", emu.base_url()),
                Some(key),
                &streaming,
            )
            .await,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(
        parse_sse(&text)
            .iter()
            .any(|(name, data)| name == "comment" && data == "keep-alive")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn mistral_puts_usage_on_the_last_content_chunk() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Mistral).await;
    let key = secrets.get("mistral-api-key").unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    let body = json!({"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}],"stream":true});
    let events = data_events(
        &String::from_utf8(read_all(post(&url, Some(key), &body).await).await.unwrap()).unwrap(),
    );
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        !last["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let unauthorized = post(&url, Some("nope"), &body).await;
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        unauthorized.json::<Value>().await.unwrap()["message"],
        "Unauthorized"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn vllm_without_key_serves_only_its_model() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Vllm).await;
    assert!(secrets.0.is_empty());
    let url = format!("{}/chat/completions", emu.base_url());
    let ok = post(&url, None, &json!({"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}})).await;
    let events = data_events(&String::from_utf8(read_all(ok).await.unwrap()).unwrap());
    assert!(events[1]["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let missing = post(
        &url,
        None,
        &json!({"model":"other","messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["type"],
        "NotFoundError"
    );
    let long = post(&url, None, &json!({"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user","content":"[[emulator:context_too_long]]"}]})).await;
    assert_eq!(long.status(), 400);
    let err: Value = long.json().await.unwrap();
    assert_eq!(err["error"]["code"], 400);
    assert_eq!(err["error"]["param"], "input_tokens");
    assert_eq!(
        client()
            .get(format!("{}/health", emu.root_url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn ollama_serves_the_openai_layer_under_v1() {
    let emu = crate::common::start(provider_emulator::EmulatorConfig::instant(
        ProviderFlavor::Ollama,
    ))
    .await;
    let resp: Value = post(
        &format!("{}/v1/chat/completions", emu.base_url()),
        None,
        &json!({"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(resp["system_fingerprint"], "fp_ollama");
    assert!(resp["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    emu.shutdown().await;
}
