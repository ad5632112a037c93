#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]
use std::time::{Duration, SystemTime};

use aws_eventstream::{Message, MessageDecoder};
use aws_sigv4::{SignableRequest, SigningParams};
use http::HeaderMap;
use provider_emulator::{ClientSecrets, Emulator, ProviderFlavor};
use secrets::Secret;
use serde_json::{Value, json};

use crate::common::{client, read_all, start_with_secrets};

const MODEL_PATH: &str = "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0";

fn body(text: &str) -> Vec<u8> {
    json!({"messages":[{"role":"user","content":[{"text":text}]}],"system":[{"text":"Be brief."}],"inferenceConfig":{"maxTokens":256}})
        .to_string()
        .into_bytes()
}

/// A request to `path` signed over `signed_body`, sending `sent_body`.
fn signed_request(
    emu: &Emulator,
    secrets: &ClientSecrets,
    path: &str,
    signed_body: &[u8],
    sent_body: Vec<u8>,
    time: SystemTime,
) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    headers.insert("host", emu.local_addr().to_string().parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let creds = aws_sigv4::Credentials {
        access_key_id: secrets.get("aws-access-key-id").unwrap().to_owned(),
        secret_access_key: Secret::new(secrets.get("aws-secret-access-key").unwrap()),
        session_token: None,
    };
    let signed = aws_sigv4::sign(
        &SignableRequest {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            body: signed_body,
        },
        &creds,
        &SigningParams {
            region: "us-east-1",
            service: "bedrock",
            time,
        },
    )
    .unwrap();
    client()
        .post(format!("{}{path}", emu.root_url()))
        .header("content-type", "application/json")
        .header("x-amz-date", signed.x_amz_date)
        .header("authorization", signed.authorization)
        .body(sent_body)
}

fn decode_frames(bytes: &[u8]) -> Vec<Message> {
    let mut decoder = MessageDecoder::new();
    decoder.push(bytes);
    let mut frames = Vec::new();
    while let Some(m) = decoder.next_message().unwrap() {
        frames.push(m);
    }
    decoder.finish().unwrap();
    frames
}

#[tokio::test]
async fn signed_converse_is_accepted_and_tampered_body_rejected() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Bedrock).await;
    let path = format!("{MODEL_PATH}/converse");
    let good = signed_request(
        &emu,
        &secrets,
        &path,
        &body("Hello"),
        body("Hello"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(good.status(), 200);
    assert!(good.headers().contains_key("x-amzn-requestid"));
    let reply: Value = good.json().await.unwrap();
    assert_eq!(reply["output"]["message"]["role"], "assistant");
    assert!(
        !reply["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(reply["stopReason"], "end_turn");
    let usage = &reply["usage"];
    assert_eq!(
        usage["totalTokens"].as_u64().unwrap(),
        usage["inputTokens"].as_u64().unwrap() + usage["outputTokens"].as_u64().unwrap()
    );
    assert!(reply["metrics"]["latencyMs"].as_u64().unwrap() > 0);

    let tampered = signed_request(
        &emu,
        &secrets,
        &path,
        &body("Hello"),
        body("Hullo"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(tampered.status(), 403);
    assert!(
        tampered.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("InvalidSignatureException:")
    );
    assert!(
        tampered.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match")
    );

    let stale = signed_request(
        &emu,
        &secrets,
        &path,
        &body("Hello"),
        body("Hello"),
        SystemTime::now() - Duration::from_secs(600),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(stale.status(), 403);
    assert!(
        stale.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("Signature expired")
    );
    let skewed = signed_request(
        &emu,
        &secrets,
        &path,
        &body("Hello"),
        body("Hello"),
        SystemTime::now() - Duration::from_secs(120),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(skewed.status(), 200, "within five minutes of skew");

    let unsigned = client()
        .post(format!("{}{path}", emu.root_url()))
        .body(body("Hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert!(
        unsigned.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("MissingAuthenticationTokenException")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn bearer_api_key_is_accepted() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Bedrock).await;
    let url = format!("{}{MODEL_PATH}/converse", emu.root_url());
    let ok = client()
        .post(&url)
        .bearer_auth(secrets.get("bedrock-api-key").unwrap())
        .body(body("Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = client()
        .post(&url)
        .bearer_auth("ABSKnope")
        .body(body("Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    emu.shutdown().await;
}

#[tokio::test]
async fn converse_stream_frames_padding_and_final_metadata() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Bedrock).await;
    let path = format!("{MODEL_PATH}/converse-stream");
    let resp = signed_request(
        &emu,
        &secrets,
        &path,
        &body("Hello"),
        body("Hello"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let frames = decode_frames(&read_all(resp).await.unwrap());
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f.header_str(":event-type").unwrap())
        .collect();
    assert_eq!(kinds[0], "messageStart");
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    let mut pad_lengths = std::collections::BTreeSet::new();
    let mut text = String::new();
    for f in &frames {
        assert_eq!(f.header_str(":message-type"), Some("event"));
        let payload: Value = serde_json::from_slice(&f.payload).unwrap();
        pad_lengths.insert(payload["p"].as_str().unwrap().len());
        if f.header_str(":event-type") == Some("contentBlockDelta") {
            text.push_str(payload["delta"]["text"].as_str().unwrap());
        }
    }
    assert!(pad_lengths.len() > 1, "padding length varies");
    let meta: Value = serde_json::from_slice(&frames.last().unwrap().payload).unwrap();
    assert!(meta["usage"]["outputTokens"].as_u64().unwrap() > 0);
    assert!(meta["metrics"]["latencyMs"].is_number());
    let plain: Value = signed_request(
        &emu,
        &secrets,
        &format!("{MODEL_PATH}/converse"),
        &body("Hello"),
        body("Hello"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        plain["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap(),
        text
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn exceptions_inside_a_200_stream_and_as_plain_errors() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Bedrock).await;
    let stream_path = format!("{MODEL_PATH}/converse-stream");
    let throttled = signed_request(
        &emu,
        &secrets,
        &stream_path,
        &body("[[emulator:rate_limit]]"),
        body("[[emulator:rate_limit]]"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(throttled.status(), 200);
    let frames = decode_frames(&read_all(throttled).await.unwrap());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header_str(":message-type"), Some("exception"));
    assert_eq!(
        frames[0].header_str(":exception-type"),
        Some("throttlingException")
    );

    let broken = signed_request(
        &emu,
        &secrets,
        &stream_path,
        &body("[[emulator:stream_error]]"),
        body("[[emulator:stream_error]]"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    let frames = decode_frames(&read_all(broken).await.unwrap());
    let last = frames.last().unwrap();
    assert_eq!(
        last.header_str(":exception-type"),
        Some("modelStreamErrorException")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&last.payload).unwrap()["originalStatusCode"],
        500
    );
    assert!(
        frames
            .iter()
            .all(|f| f.header_str(":event-type") != Some("metadata"))
    );

    let path = format!("{MODEL_PATH}/converse");
    let limited = signed_request(
        &emu,
        &secrets,
        &path,
        &body("[[emulator:rate_limit]]"),
        body("[[emulator:rate_limit]]"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(!limited.headers().contains_key("retry-after"));
    assert_eq!(
        limited.headers()["x-amzn-errortype"],
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    );
    assert_eq!(
        limited.json::<Value>().await.unwrap(),
        json!({"message":"Too many requests, please wait before trying again."})
    );
    let long = signed_request(
        &emu,
        &secrets,
        &path,
        &body("[[emulator:context_too_long]]"),
        body("[[emulator:context_too_long]]"),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(long.status(), 400);
    assert_eq!(
        long.json::<Value>().await.unwrap()["message"],
        "Input is too long for requested model."
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn titan_embeddings_through_invoke() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Bedrock).await;
    let path = "/model/amazon.titan-embed-text-v2%3A0/invoke";
    let payload = json!({"inputText":"hello world","dimensions":256,"normalize":true})
        .to_string()
        .into_bytes();
    let resp: Value = signed_request(
        &emu,
        &secrets,
        path,
        &payload,
        payload.clone(),
        SystemTime::now(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(resp["embedding"].as_array().unwrap().len(), 256);
    assert!(resp["inputTextTokenCount"].as_u64().unwrap() > 0);
    emu.shutdown().await;
}
