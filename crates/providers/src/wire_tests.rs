//! The thin senders over a real HTTP client against loopback servers:
//! configuration from env and secrets, auth on the wire (SigV4 verified
//! from the received headers, the service-account JWT verified with the
//! public key), streaming bodies, and the call deadline.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::loopback::{Received, Reply, TempSecrets, serve};
use super::{
    CallScope, ChatChunk, ChatRequest, EmbedRequest, FinishReason, Message, ProviderError,
    Providers, Usage, env_vars,
};
use google_auth::{ServiceAccountKey, verify_rs256};
use routing_core::env::Env;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn cx(seconds: u64) -> CallScope<'static> {
    CallScope {
        call_id: "wire-test",
        deadline: Instant::now() + Duration::from_secs(seconds),
    }
}

fn hello(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::user("Hello")],
        max_tokens: Some(64),
        temperature: None,
        stop: vec![],
        options: Default::default(),
        logprobs: false,
    }
}

fn providers(env: &[(&str, &str)], secrets: &TempSecrets) -> Providers {
    Providers::from_env(
        &Env::from_pairs(env.iter().copied()),
        &secrets.store(),
        http_client::client().unwrap(),
    )
    .unwrap()
}

async fn drain(
    mut stream: super::ChatStream,
) -> (String, Option<(FinishReason, Usage)>, Option<ProviderError>) {
    let (mut text, mut done, mut error) = (String::new(), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(ChatChunk::Delta { text: t }) => text.push_str(&t),
            Ok(ChatChunk::Done {
                finish_reason,
                usage,
            }) => done = Some((finish_reason, usage)),
            Err(e) => error = Some(e),
        }
    }
    (text, done, error)
}

#[tokio::test]
async fn groq_streams_over_the_wire_with_its_key() {
    let server =
        serve(|_| Reply::Full(200, "text/event-stream", fixture("groq/chat-stream.sse"))).await;
    let secrets = TempSecrets::new("wire-groq", &[("groq-api-key", "gsk_wire")]);
    let providers = providers(&[(env_vars::GROQ_BASE_URL, &server.url)], &secrets);
    let stream = providers
        .get("groq")
        .unwrap()
        .chat_stream(&hello("llama-3.1-8b-instant"), &cx(10))
        .await
        .unwrap();
    let (text, done, error) = drain(stream).await;
    assert_eq!(text, "Hi!");
    assert_eq!(error, None);
    assert_eq!(done.unwrap().1.output_tokens, 120);
    let received = server.received.lock().unwrap();
    assert_eq!(received[0].target, "/chat/completions");
    assert_eq!(received[0].headers["authorization"], "Bearer gsk_wire");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_silent_server_hits_the_deadline() {
    let server = serve(|_| Reply::Silent).await;
    let secrets = TempSecrets::new("wire-silent", &[]);
    let providers = providers(&[(env_vars::OLLAMA_BASE_URL, &server.url)], &secrets);
    let cx = CallScope {
        call_id: "silent",
        deadline: Instant::now() + Duration::from_millis(200),
    };
    let err = providers
        .get("ollama")
        .unwrap()
        .chat(&hello("llama3.2"), &cx)
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Timeout);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let secrets = TempSecrets::new("wire-refused", &[]);
    let providers = providers(&[(env_vars::OLLAMA_BASE_URL, &url)], &secrets);
    let err = providers
        .get("ollama")
        .unwrap()
        .chat(&hello("llama3.2"), &cx(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
}

fn verify_sigv4(request: &Received) -> bool {
    let Some(auth) = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| aws_sigv4::parse_authorization(v).ok())
    else {
        return false;
    };
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let signable = aws_sigv4::SignableRequest {
        method: &request.method,
        path,
        query,
        headers: &request.headers,
        body: &request.body,
    };
    auth.access_key_id == "AKIDWIRE"
        && auth.service == "bedrock"
        && aws_sigv4::verify(
            &signable,
            &auth,
            "wire-secret",
            SystemTime::now(),
            Duration::from_secs(300),
        )
        .is_ok()
}

#[tokio::test]
async fn bedrock_signatures_verify_from_the_received_request() {
    let server = serve(|request| {
        if !verify_sigv4(request) {
            return Reply::Full(
                403,
                "application/json",
                br#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match"}"#.to_vec(),
            );
        }
        if request.target.ends_with("/converse-stream") {
            Reply::Full(
                200,
                "application/vnd.amazon.eventstream",
                fixture("bedrock/converse-stream.bin"),
            )
        } else {
            Reply::Full(200, "application/json", fixture("bedrock/converse-ok.json"))
        }
    })
    .await;
    let secrets = TempSecrets::new(
        "wire-bedrock",
        &[
            ("aws-access-key-id", "AKIDWIRE"),
            ("aws-secret-access-key", "wire-secret"),
            ("aws-session-token", "wire-token"),
        ],
    );
    let providers = providers(&[(env_vars::BEDROCK_BASE_URL, &server.url)], &secrets);
    let bedrock = providers.get("bedrock").unwrap();
    let model = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    let answer = bedrock.chat(&hello(model), &cx(10)).await.unwrap();
    assert_eq!(answer.text, "Hi! How can I help?");
    let stream = bedrock.chat_stream(&hello(model), &cx(10)).await.unwrap();
    let (text, done, error) = drain(stream).await;
    assert_eq!((text.as_str(), error), ("Hi!", None));
    assert_eq!(done.unwrap().1.input_tokens, 12);
    {
        let received = server.received.lock().unwrap();
        assert_eq!(
            received[0].target,
            "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse"
        );
        assert_eq!(received[0].headers["x-amz-security-token"], "wire-token");
    }

    // A wrong secret is rejected by the verifier and classified as auth.
    let wrong = TempSecrets::new(
        "wire-bedrock-wrong",
        &[
            ("aws-access-key-id", "AKIDWIRE"),
            ("aws-secret-access-key", "not-the-secret"),
        ],
    );
    let providers = self::providers(&[(env_vars::BEDROCK_BASE_URL, &server.url)], &wrong);
    let err = providers
        .get("bedrock")
        .unwrap()
        .chat(&hello(model), &cx(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn vertex_exchanges_a_verified_jwt_once_and_reuses_the_token() {
    let sa_json = String::from_utf8(fixture("vertex/service-account.json")).unwrap();
    let public_key = ServiceAccountKey::from_json(&sa_json)
        .unwrap()
        .public_key_der();
    let token_url = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let expected_aud = std::sync::Arc::clone(&token_url);
    let server = serve(move |request| match request.target.as_str() {
        "/token" => {
            let form = String::from_utf8(request.body.clone()).unwrap();
            let assertion = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("assertion="))
                .unwrap_or("");
            let grant_ok =
                form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer");
            match verify_rs256(assertion, &public_key) {
                Ok(jwt)
                    if grant_ok
                        && jwt.claims["aud"].as_str() == expected_aud.get().map(String::as_str)
                        && jwt.claims["exp"].as_u64().unwrap_or(0)
                            - jwt.claims["iat"].as_u64().unwrap_or(0)
                            <= 3600 =>
                {
                    Reply::Full(
                        200,
                        "application/json",
                        br#"{"access_token":"ya29.wire","expires_in":"3599","token_type":"Bearer"}"#
                            .to_vec(),
                    )
                }
                _ => Reply::Full(
                    400,
                    "application/json",
                    br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
                        .to_vec(),
                ),
            }
        }
        target if target.ends_with(":generateContent") => {
            if request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some("Bearer ya29.wire")
            {
                Reply::Full(200, "application/json", fixture("gemini/generate-ok.json"))
            } else {
                Reply::Full(
                    401,
                    "application/json",
                    br#"{"error":{"code":401,"message":"bad token","status":"UNAUTHENTICATED"}}"#
                        .to_vec(),
                )
            }
        }
        _ => Reply::Full(404, "application/json", b"{}".to_vec()),
    })
    .await;
    let token = format!("{}/token", server.url);
    token_url.set(token.clone()).unwrap();
    let secrets = TempSecrets::new("wire-vertex", &[("vertex-service-account", &sa_json)]);
    let providers = providers(
        &[
            (env_vars::VERTEX_BASE_URL, &server.url),
            (env_vars::VERTEX_TOKEN_URL, &token),
            (env_vars::VERTEX_PROJECT, "wire-project"),
        ],
        &secrets,
    );
    let vertex = providers.get("vertex").unwrap();
    for _ in 0..2 {
        let answer = vertex
            .chat(&hello("gemini-2.5-flash"), &cx(10))
            .await
            .unwrap();
        assert_eq!(answer.text, "Rayleigh scattering.");
    }
    let received = server.received.lock().unwrap();
    let targets: Vec<&str> = received.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/token",
            "/v1/projects/wire-project/locations/global/publishers/google/models/gemini-2.5-flash:generateContent",
            "/v1/projects/wire-project/locations/global/publishers/google/models/gemini-2.5-flash:generateContent",
        ]
    );
    assert_eq!(
        received[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn vertex_on_the_metadata_server_sends_the_flavor_header() {
    let server = serve(|request| {
        if request
            .target
            .starts_with("/computeMetadata/v1/instance/service-accounts/default/token")
        {
            if request
                .headers
                .get("metadata-flavor")
                .and_then(|v| v.to_str().ok())
                == Some("Google")
            {
                Reply::Full(
                    200,
                    "application/json",
                    br#"{"access_token":"ya29.md","expires_in":3599,"token_type":"Bearer"}"#
                        .to_vec(),
                )
            } else {
                Reply::Full(403, "text/plain", b"Missing Metadata-Flavor".to_vec())
            }
        } else if request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some("Bearer ya29.md")
        {
            Reply::Full(200, "text/event-stream", fixture("gemini/stream-ok.sse"))
        } else {
            Reply::Full(401, "application/json", b"{}".to_vec())
        }
    })
    .await;
    let secrets = TempSecrets::new("wire-metadata", &[]);
    let host = server.url.trim_start_matches("http://").to_owned();
    let providers = providers(
        &[
            (env_vars::VERTEX_BASE_URL, &server.url),
            (env_vars::VERTEX_USE_METADATA, "true"),
            (env_vars::VERTEX_PROJECT, "p"),
            (env_vars::VERTEX_LOCATION, "us-central1"),
            (env_vars::GCE_METADATA_HOST, &host),
        ],
        &secrets,
    );
    let stream = providers
        .get("vertex")
        .unwrap()
        .chat_stream(&hello("gemini-2.5-flash"), &cx(10))
        .await
        .unwrap();
    let (text, done, error) = drain(stream).await;
    assert_eq!((text.as_str(), error), ("Rayleigh scattering.", None));
    assert_eq!(done.unwrap().1.reasoning_tokens, 20);
    let received = server.received.lock().unwrap();
    assert!(received[1].target.ends_with(
        "/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    ));
}

#[tokio::test]
async fn anthropic_overload_and_missing_embeddings_are_classified() {
    let server = serve(|_| {
        Reply::Full(
            529,
            "application/json",
            fixture("anthropic/error-overloaded.json"),
        )
    })
    .await;
    let secrets = TempSecrets::new("wire-anthropic", &[("anthropic-api-key", "sk-ant-wire")]);
    let providers = providers(&[(env_vars::ANTHROPIC_BASE_URL, &server.url)], &secrets);
    let anthropic = providers.get("anthropic").unwrap();
    let err = anthropic
        .chat(&hello("claude-haiku-4-5"), &cx(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Overloaded { .. }), "{err:?}");
    let err = anthropic
        .chat_stream(&hello("claude-haiku-4-5"), &cx(10))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ProviderError::Overloaded { .. }), "{err:?}");
    let err = anthropic
        .embed(
            &EmbedRequest {
                model: "x".into(),
                inputs: vec!["a".into()],
            },
            &cx(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::BadRequest { .. }));
    let received = server.received.lock().unwrap();
    assert_eq!(received[0].headers["anthropic-version"], "2023-06-01");
    assert_eq!(received[0].headers["x-api-key"], "sk-ant-wire");
}

#[tokio::test]
async fn ollama_lists_models_and_embeds() {
    let server = serve(|request| match request.target.as_str() {
        "/api/tags" => Reply::Full(200, "application/json", fixture("ollama/tags-ok.json")),
        "/api/embed" => Reply::Full(200, "application/json", fixture("ollama/embed-ok.json")),
        _ => Reply::Full(
            404,
            "application/json",
            br#"{"error":"model 'x' not found"}"#.to_vec(),
        ),
    })
    .await;
    let secrets = TempSecrets::new("wire-ollama", &[]);
    let providers = providers(&[(env_vars::OLLAMA_BASE_URL, &server.url)], &secrets);
    let super::Provider::Ollama(ollama) = providers.get("ollama").unwrap() else {
        panic!("ollama is an Ollama client");
    };
    assert_eq!(
        ollama.list_models(&cx(10)).await.unwrap(),
        ["llama3:latest"]
    );
    let embedded = ollama
        .embed(
            &EmbedRequest {
                model: "all-minilm".into(),
                inputs: vec!["a".into(), "b".into()],
            },
            &cx(10),
        )
        .await
        .unwrap();
    assert_eq!(embedded.embeddings.len(), 2);
    let err = ollama.chat(&hello("x"), &cx(10)).await.unwrap_err();
    assert!(matches!(err, ProviderError::BadRequest { .. }));
}
