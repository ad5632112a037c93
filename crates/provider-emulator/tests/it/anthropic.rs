#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]
use provider_emulator::ProviderFlavor;
use serde_json::{Value, json};

use crate::common::{client, parse_sse, read_all, start_with_secrets};

fn body(content: &str) -> Value {
    json!({"model":"claude-haiku-4-5","max_tokens":256,"system":"Be brief.","messages":[{"role":"user","content":content}]})
}

async fn post(
    url: &str,
    key: Option<&str>,
    version: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = client().post(url).json(body);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if let Some(version) = version {
        req = req.header("anthropic-version", version);
    }
    req.send().await.unwrap()
}

const V: Option<&str> = Some("2023-06-01");

#[tokio::test]
async fn messages_non_stream() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Anthropic).await;
    let key = secrets.get("anthropic-api-key");
    let url = format!("{}/v1/messages", emu.base_url());
    let resp = post(&url, key, V, &body("Hello")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(
        resp.headers()["anthropic-ratelimit-tokens-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z')
    );
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["content"][0]["type"], "text");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(msg["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let short: Value = post(&url, key, V, &json!({"model":"claude-haiku-4-5","max_tokens":3,"messages":[{"role":"user","content":"Hello"}]})).await.json().await.unwrap();
    assert_eq!(short["stop_reason"], "max_tokens");
    assert_eq!(short["usage"]["output_tokens"], 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn auth_and_version_are_required() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Anthropic).await;
    let url = format!("{}/v1/messages", emu.base_url());
    let missing = post(&url, None, V, &body("x")).await;
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(
        err["error"],
        json!({"type":"authentication_error","message":"x-api-key header is required"})
    );
    assert!(err["request_id"].as_str().unwrap().starts_with("req_"));
    let wrong = post(&url, Some("sk-ant-nope"), V, &body("x")).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["message"],
        "invalid x-api-key"
    );
    let no_version = post(&url, secrets.get("anthropic-api-key"), None, &body("x")).await;
    assert_eq!(no_version.status(), 400);
    assert_eq!(
        no_version.json::<Value>().await.unwrap()["error"]["message"],
        "anthropic-version: header is required"
    );
    let no_max = post(
        &url,
        secrets.get("anthropic-api-key"),
        V,
        &json!({"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(no_max.status(), 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn stream_has_named_events_ping_unknown_and_cumulative_usage() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Anthropic).await;
    let url = format!("{}/v1/messages", emu.base_url());
    let mut b = body("Hello");
    b["stream"] = json!(true);
    let resp = post(&url, secrets.get("anthropic-api-key"), V, &b).await;
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&String::from_utf8(read_all(resp).await.unwrap()).unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert!(names.contains(&"unknown_future_event"));
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    for (name, data) in &events {
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], name.as_str(), "event name equals data.type");
    }
    let start: Value = serde_json::from_str(&events[0].1).unwrap();
    let input = start["message"]["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input > 0);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"].as_u64().unwrap(), input);
    let plain: Value = post(&url, secrets.get("anthropic-api-key"), V, &body("Hello"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["content"][0]["text"].as_str().unwrap(), text);
    assert_eq!(
        delta["usage"]["output_tokens"],
        plain["usage"]["output_tokens"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_in_anthropics_shapes() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Anthropic).await;
    let key = secrets.get("anthropic-api-key");
    let url = format!("{}/v1/messages", emu.base_url());
    let limited = post(&url, key, V, &body("[[emulator:rate_limit]]")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
    let capped = post(&url, key, V, &body("[[emulator:quota_exhausted]]")).await;
    assert_eq!(capped.status(), 429);
    assert!(!capped.headers().contains_key("retry-after"));
    assert_eq!(
        capped.json::<Value>().await.unwrap()["error"]["details"]["error_code"],
        "enforced_spend_limit_reached"
    );
    let overloaded = post(&url, key, V, &body("[[emulator:overloaded]]")).await;
    assert_eq!(overloaded.status().as_u16(), 529);
    assert_eq!(
        overloaded.json::<Value>().await.unwrap()["error"],
        json!({"type":"overloaded_error","message":"Overloaded"})
    );
    let long = post(&url, key, V, &body("[[emulator:context_too_long]]")).await;
    assert_eq!(long.status(), 400);
    let message = long.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with("prompt is too long: ")
            && message.ends_with(" tokens > 200000 maximum")
    );
    let mut streamed = body("[[emulator:stream_error]]");
    streamed["stream"] = json!(true);
    let resp = post(&url, key, V, &streamed).await;
    assert_eq!(resp.status(), 200);
    let events = parse_sse(&String::from_utf8(read_all(resp).await.unwrap()).unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["error"]["type"],
        "overloaded_error"
    );
    assert_eq!(emu.stats().total_requests, 5);
    emu.shutdown().await;
}
