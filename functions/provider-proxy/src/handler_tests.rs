//! The provider-proxy handler in-process, against an Ollama emulator started
//! in-process: real requests, no server of its own.

use faas_runtime::testing::{assert_error, call};
use http::{Method, StatusCode};

use provider_emulator::{Emulator, EmulatorConfig, ProviderFlavor};

/// The handler with Ollama at an emulator and no secrets at all (every
/// hosted provider is registered but not configured).
async fn handler() -> (crate::handler::ProxyHandler, Emulator) {
    handler_with(&[]).await
}

/// As [`handler`], with more environment.
async fn handler_with(extra: &[(&str, &str)]) -> (crate::handler::ProxyHandler, Emulator) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let emulator = Emulator::start(listener, EmulatorConfig::instant(ProviderFlavor::Ollama))
        .await
        .unwrap();
    let ollama = emulator.base_url();
    let env = routing_core::env::Env::from_pairs(
        [
            ("OLLAMA_BASE_URL", ollama.as_str()),
            ("SECRETS_DIR", "/nonexistent/provider-proxy-handler-test"),
        ]
        .into_iter()
        .chain(extra.iter().copied()),
    );
    let proxy = crate::proxy::Proxy::new(&env, &prometheus::Registry::new()).unwrap();
    (crate::handler::ProxyHandler::new(proxy), emulator)
}

fn chat(provider: &str, content: &str, extra: &str) -> String {
    format!(
        r#"{{"provider":"{provider}","model":"llama3.2:latest","task":"generate",
            "messages":[{{"role":"user","content":"{content}"}}]{extra}}}"#
    )
}

#[tokio::test]
async fn a_chat_is_answered_and_providers_are_listed() {
    let (handler, emulator) = handler().await;
    let (status, body) = call(&handler, Method::POST, "/", &chat("ollama", "hi", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["provider"], "ollama", "{body}");
    assert_eq!(body["model"], "llama3.2:latest", "{body}");
    assert!(
        body["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{body}"
    );

    let (status, body) = call(&handler, Method::GET, "/providers", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"ollama") && names.contains(&"groq"),
        "{body}"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field() {
    let (handler, emulator) = handler().await;
    let empty = r#"{"provider":"ollama","model":"m","task":"generate","messages":[]}"#.to_owned();
    for (body, param, mentions) in [
        (empty, Some("messages"), "empty"),
        (chat("nope", "hi", ""), Some("provider"), "nope"),
        (
            chat("ollama", "hi", "").replace("generate", "dance"),
            Some("task"),
            "dance",
        ),
        (r#"{"model":"m"}"#.to_owned(), None, "`provider`"),
        (r#"{"provider":"#.to_owned(), None, "invalid JSON"),
    ] {
        let answer = call(&handler, Method::POST, "/", &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, param, mentions);
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn refusals_and_provider_failures_keep_their_class() {
    let (handler, emulator) = handler().await;
    let private = chat("groq", "hi", r#","private":true"#);
    let answer = call(&handler, Method::POST, "/", &private).await;
    assert_error(&answer, StatusCode::FORBIDDEN, Some("provider"), "groq");

    let groq = r#"{"provider":"groq","model":"llama-3.1-8b-instant","task":"generate",
        "messages":[{"role":"user","content":"hi"}]}"#;
    let answer = call(&handler, Method::POST, "/", groq).await;
    assert_error(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "groq-api-key",
    );
    assert_eq!(answer.1["error"]["type"], "not_configured");
    assert_eq!(answer.1["error"]["failure"]["class"], "auth");

    let too_long = chat("ollama", "[[emulator:context_too_long]]", "");
    let answer = call(&handler, Method::POST, "/", &too_long).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, None, "context");
    assert_eq!(answer.1["error"]["type"], "context_too_long");
    assert_eq!(answer.1["error"]["failure"]["class"], "context_too_long");

    let limited = chat("ollama", "[[emulator:server_error]]", "");
    let answer = call(&handler, Method::POST, "/", &limited).await;
    assert_eq!(answer.1["error"]["failure"]["class"], "provider_error");
    emulator.shutdown().await;
}

#[tokio::test]
async fn model_ids_that_leave_their_path_are_refused() {
    let (handler, emulator) = handler().await;
    for model in ["..", "../../x", "a/./b"] {
        let body = format!(
            r#"{{"provider":"bedrock","model":"{model}","task":"generate",
                "messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let answer = call(&handler, Method::POST, "/", &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, Some("model"), "model");
        assert_eq!(answer.1["error"]["failure"]["class"], "bad_request");
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn other_paths_and_methods_are_404() {
    let (handler, emulator) = handler().await;
    for (method, path) in [(Method::GET, "/"), (Method::POST, "/providers")] {
        let answer = call(&handler, method, path, "{}").await;
        assert_error(&answer, StatusCode::NOT_FOUND, None, path);
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_model_without_a_price_is_refused_unless_allowed() {
    let unpriced = r#"{"provider":"groq","model":"invented-model","task":"generate",
        "messages":[{"role":"user","content":"hi"}]}"#;
    let (handler, _emulator) = handler().await;
    let answer = call(&handler, Method::POST, "/", unpriced).await;
    assert_error(&answer, StatusCode::FORBIDDEN, Some("model"), "no price");
    assert_eq!(
        answer.1["error"]["type"], "model_not_allowed",
        "{}",
        answer.1
    );
    assert_eq!(
        answer.1["error"]["failure"]["class"], "bad_request",
        "{}",
        answer.1
    );

    // Allowed, the call goes on (and fails here only because groq has no key).
    let (handler, _emulator) = handler_with(&[("ALLOW_UNPRICED_MODELS", "true")]).await;
    let (status, body) = call(&handler, Method::POST, "/", unpriced).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["type"], "not_configured", "{body}");
}

#[tokio::test]
async fn max_tokens_is_capped() {
    let (handler, emulator) = handler_with(&[("MAX_OUTPUT_TOKENS", "64")]).await;
    let sent = |emulator: &Emulator| -> serde_json::Value {
        serde_json::from_str(&emulator.stats().recent.last().expect("a request").body).unwrap()
    };
    let (status, body) = call(
        &handler,
        Method::POST,
        "/",
        &chat("ollama", "hi", r#","max_tokens":100000"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sent(&emulator)["options"]["num_predict"], 64);
    // Under the cap, the caller's limit stands; without one, the provider's.
    let (status, body) = call(
        &handler,
        Method::POST,
        "/",
        &chat("ollama", "hi", r#","max_tokens":10"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sent(&emulator)["options"]["num_predict"], 10);
    let (status, body) = call(&handler, Method::POST, "/", &chat("ollama", "hi", "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(sent(&emulator)["options"].get("num_predict").is_none());
}
