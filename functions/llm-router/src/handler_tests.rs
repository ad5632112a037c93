//! The llm-router handler in-process, its gateway an address that refuses
//! connections: real requests, no server, no fleet behind it.

use faas_runtime::testing::{assert_error, call};
use http::{Method, StatusCode};

/// The handler, its gateway a port that was just free (nothing listens).
async fn handler() -> crate::handler::RouterHandler {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = routing_core::env::Env::from_pairs([("OPENFAAS_GATEWAY_URL", gateway.as_str())]);
    let router = crate::router::Router::new(&env, &prometheus::Registry::new()).unwrap();
    crate::handler::RouterHandler::new(router)
}

#[tokio::test]
async fn what_needs_no_other_function_is_answered() {
    let handler = handler().await;
    let (status, body) = call(&handler, Method::GET, "/", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["function"], "llm-router", "{body}");

    let (status, body) = call(&handler, Method::GET, "/v1/models", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["data"].as_array().is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    let dry_run = r#"{"prompt":"hi","task":"generate","difficulty":"simple"}"#;
    let (status, body) = call(&handler, Method::POST, "/dry-run", dry_run).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["task"], "generate", "{body}");
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field() {
    let handler = handler().await;
    for (path, body, param, mentions) in [
        (
            "/",
            r#"{"prompt":"hi","max_latency_ms":0}"#,
            Some("max_latency_ms"),
            "between",
        ),
        (
            "/",
            r#"{"prompt":"hi","temperature":3}"#,
            Some("temperature"),
            "between",
        ),
        (
            "/",
            r#"{"prompt":"hi","tenant":""}"#,
            Some("tenant"),
            "tenant",
        ),
        (
            "/",
            r#"{"prompt":"hi","task":"dance"}"#,
            Some("task"),
            "dance",
        ),
        ("/", r#"{"prompt":"#, None, "invalid JSON"),
        (
            "/dry-run",
            r#"{"prompt":"hi","max_tokens":0}"#,
            Some("max_tokens"),
            "at least 1",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"auto","messages":[]}"#,
            Some("messages"),
            "empty",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}],"temperature":9}"#,
            Some("temperature"),
            "between",
        ),
    ] {
        let answer = call(&handler, Method::POST, path, body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, param, mentions);
    }
}

#[tokio::test]
async fn an_unreachable_fleet_is_503() {
    let handler = handler().await;
    for (path, body, kind) in [
        (
            "/",
            r#"{"prompt":"hi","task":"generate","difficulty":"simple"}"#,
            "unavailable",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"auto","input":"hi"}"#,
            "server_error",
        ),
    ] {
        let answer = call(&handler, Method::POST, path, body).await;
        assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, None, "");
        assert_eq!(answer.1["error"]["type"], kind, "{}", answer.1);
        if path == "/" {
            assert_eq!(
                answer.1["error"]["failure"]["class"], "unreachable_proxy",
                "{}",
                answer.1
            );
        }
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("http"), "{message}");
    }
}

#[tokio::test]
async fn the_openai_api_refuses_what_it_would_not_serve_before_routing() {
    // Every refusal comes before any call: the fleet behind is unreachable.
    let handler = handler().await;
    let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
    for (path, body, param, code) in [
        (
            "/v1/chat/completions",
            format!(r#"{{"model":"auto",{hi},"Private":true}}"#),
            "Private",
            "unknown_parameter",
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{"model":"auto",{hi},"is_private":true}}"#),
            "is_private",
            "unknown_parameter",
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{"model":"auto",{hi},"functions":[{{"name":"f"}}]}}"#),
            "functions",
            "unsupported_parameter",
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{"model":"auto",{hi},"response_format":{{"type":"json_object"}}}}"#),
            "response_format",
            "unsupported_value",
        ),
        (
            "/v1/chat/completions",
            format!(r#"{{"model":"auto",{hi},"top_p":3}}"#),
            "top_p",
            "invalid_value",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"auto","input":"hi","dimensions":64}"#.to_owned(),
            "dimensions",
            "unsupported_parameter",
        ),
    ] {
        let answer = call(&handler, Method::POST, path, &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, Some(param), param);
        assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
        assert_eq!(
            answer.1["error"]["type"], "invalid_request_error",
            "{}",
            answer.1
        );
    }
}

#[tokio::test]
async fn models_are_retrieved_by_id() {
    let handler = handler().await;
    let (status, body) = call(
        &handler,
        Method::GET,
        "/v1/models/vertex/gemini-2.5-flash",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "vertex/gemini-2.5-flash", "{body}");
    assert_eq!(body["object"], "model", "{body}");
    let (status, body) = call(&handler, Method::GET, "/v1/models/auto", "").await;
    assert_eq!((status, &body["id"]), (StatusCode::OK, &"auto".into()));
    let answer = call(&handler, Method::GET, "/v1/models/nope%2Fnone", "").await;
    assert_error(&answer, StatusCode::NOT_FOUND, Some("model"), "nope/none");
    assert_eq!(answer.1["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn other_paths_and_methods_are_404() {
    let handler = handler().await;
    for (method, path) in [(Method::DELETE, "/"), (Method::GET, "/v1/chat/completions")] {
        let answer = call(&handler, method, path, "").await;
        assert_error(&answer, StatusCode::NOT_FOUND, None, path);
    }
}

/// The handler with one recorded call, `known`, made for tenant `acme`.
async fn handler_with_a_call() -> crate::handler::RouterHandler {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = routing_core::env::Env::from_pairs([("OPENFAAS_GATEWAY_URL", gateway.as_str())]);
    let router = crate::router::Router::new(&env, &prometheus::Registry::new()).unwrap();
    let model = router.policy().models().next().unwrap().id.clone();
    router
        .record(routing_core::calls::CallRecord {
            call_id: "known".to_owned(),
            tenant: Some("acme".to_owned()),
            model: model.clone(),
            tier: Some(routing_core::Difficulty::Simple),
            candidates: vec![model],
            context: routing_core::policy::LearningContext {
                task: routing_core::Task::Generate,
                tier: Some(routing_core::Difficulty::Simple),
                length: 0,
            },
            explored: false,
            private: false,
        })
        .await;
    crate::handler::RouterHandler::new(router)
}

#[tokio::test]
async fn bad_feedback_is_400_naming_the_field() {
    let handler = handler_with_a_call().await;
    for path in ["/feedback", "/v1/feedback"] {
        for (body, param, mentions) in [
            (
                r#"{"call_id":"known","score":1.5,"tenant":"acme"}"#,
                Some("score"),
                "between 0 and 1",
            ),
            (
                r#"{"call_id":"known","score":-0.1,"tenant":"acme"}"#,
                Some("score"),
                "between 0 and 1",
            ),
            (
                r#"{"call_id":"known","tenant":"acme"}"#,
                Some("score"),
                "required",
            ),
            (
                r#"{"call_id":"known","score":1,"thumbs":"up","tenant":"acme"}"#,
                Some("score"),
                "not both",
            ),
            (
                r#"{"call_id":"known","thumbs":"sideways","tenant":"acme"}"#,
                Some("thumbs"),
                "sideways",
            ),
            (
                r#"{"call_id":"known","score":1,"stars":5,"tenant":"acme"}"#,
                Some("stars"),
                "stars",
            ),
            (r#"{"score":1}"#, Some("call_id"), "call_id"),
            (
                r#"{"call_id":"known","score":1,"preferred_model":"nope/none","tenant":"acme"}"#,
                Some("preferred_model"),
                "not in the catalogue",
            ),
        ] {
            let answer = call(&handler, Method::POST, path, body).await;
            assert_error(&answer, StatusCode::BAD_REQUEST, param, mentions);
        }
    }
}

#[tokio::test]
async fn feedback_statuses_follow_the_call() {
    let handler = handler_with_a_call().await;
    let unknown = call(
        &handler,
        Method::POST,
        "/feedback",
        r#"{"call_id":"never-routed","thumbs":"up","tenant":"acme"}"#,
    )
    .await;
    assert_error(
        &unknown,
        StatusCode::NOT_FOUND,
        Some("call_id"),
        "never-routed",
    );
    for other in [
        r#"{"call_id":"known","thumbs":"up","tenant":"globex"}"#,
        r#"{"call_id":"known","thumbs":"up"}"#,
    ] {
        let answer = call(&handler, Method::POST, "/feedback", other).await;
        assert_error(
            &answer,
            StatusCode::FORBIDDEN,
            Some("tenant"),
            "another tenant",
        );
    }
    let (status, body) = call(
        &handler,
        Method::POST,
        "/v1/feedback",
        r#"{"call_id":"known","score":0.25,"tenant":"acme"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["learned"], true, "{body}");
    assert_eq!(body["reward"], 0.25, "{body}");
    assert_eq!(body["observations"], 1, "{body}");
    let again = call(
        &handler,
        Method::POST,
        "/feedback",
        r#"{"call_id":"known","thumbs":"down","tenant":"acme"}"#,
    )
    .await;
    assert_error(&again, StatusCode::CONFLICT, Some("call_id"), "already");
}
