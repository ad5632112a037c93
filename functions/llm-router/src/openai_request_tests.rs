use super::*;
use serde_json::json;

fn chat(body: Value) -> Result<ChatCompletionRequest, ParamError> {
    ChatCompletionRequest::parse(body.to_string().as_bytes())
}

fn refused(body: Value) -> ParamError {
    chat(body.clone())
        .and_then(|r| r.into_route_request().map(|_| ()))
        .map(|()| panic!("{body} was accepted"))
        .unwrap_or_else(|e| e)
}

fn user_says(extra: Value) -> Value {
    let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn openai_messages_become_fleet_messages() {
    let req = chat(json!({
        "model": "auto",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c", "refusal": null, "annotations": [], "tool_calls": null}
        ],
        "max_latency_ms": 250, "private": true
    }))
    .unwrap();
    let messages = req.fleet_messages().unwrap();
    assert_eq!(messages[0].role, Role::System);
    assert_eq!(messages[1].content, "a\nb");
    assert_eq!(messages[2].role, Role::Assistant);
    assert_eq!(req.hints.max_latency_ms, Some(250));
    assert_eq!(req.hints.private, Some(true));
}

#[test]
fn every_mapped_field_reaches_the_route_request() {
    let req = chat(json!({
        "model": "groq/llama", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5, "stop": "END",
        "stream": true, "stream_options": {"include_usage": true, "include_obfuscation": false},
        "n": 1, "top_p": 0.9, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "user": "u-1", "logprobs": false, "tools": [], "response_format": {"type": "text"},
        "task": "reason", "max_latency_ms": 250, "private": true,
        "tenant": "t", "max_cost_usd": 0.1, "quality": 0.8, "difficulty": "hard"
    }))
    .unwrap();
    assert!(req.include_usage());
    let route = req.into_route_request().unwrap();
    assert_eq!(
        route,
        RouteRequest {
            task: Some(Task::Reason),
            messages: Some(vec![Message::user("hi")]),
            max_latency_ms: Some(250),
            private: true,
            max_tokens: Some(20),
            temperature: Some(0.5),
            stop: vec!["END".to_owned()],
            tenant: Some("t".to_owned()),
            max_cost_usd: Some(0.1),
            quality: Some(0.8),
            model: Some("groq/llama".to_owned()),
            difficulty: Some(Difficulty::Hard),
            stream: true,
            options: GenerationOptions {
                top_p: Some(0.9),
                seed: Some(7),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(-0.5),
                user: Some("u-1".to_owned()),
            },
            ..RouteRequest::default()
        }
    );
    let auto = chat(user_says(json!({}))).unwrap();
    assert_eq!(auto.into_route_request().unwrap().model, None);
    let newer = chat(user_says(
        json!({"user": "old", "safety_identifier": "new"}),
    ))
    .unwrap();
    assert_eq!(
        newer.into_route_request().unwrap().options.user.as_deref(),
        Some("new")
    );
}

#[test]
fn misspelt_privacy_fields_are_unknown_never_ignored() {
    for field in ["Private", "is_private", "privacy", "PRIVATE", "privat"] {
        let err = refused(user_says(json!({ field: true })));
        assert_eq!(err.code, "unknown_parameter", "{field}");
        assert_eq!(err.param.as_deref(), Some(field));
        assert!(
            err.message.contains("Did you mean 'private'?"),
            "{field}: {}",
            err.message
        );
    }
    let err = refused(user_says(json!({"temprature": 0.2})));
    assert_eq!(
        (err.code, err.param.as_deref()),
        ("unknown_parameter", Some("temprature"))
    );
}

#[test]
fn openai_parameters_the_router_does_not_serve_are_refused_by_name() {
    for (extra, param, code) in [
        (
            json!({"functions": [{"name": "f", "parameters": {}}]}),
            "functions",
            "unsupported_parameter",
        ),
        (
            json!({"function_call": "auto"}),
            "function_call",
            "unsupported_parameter",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
            "unsupported_parameter",
        ),
        (
            json!({"tool_choice": "required"}),
            "tool_choice",
            "unsupported_parameter",
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
            "unsupported_value",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format",
            "unsupported_value",
        ),
        (
            json!({"logprobs": true}),
            "logprobs",
            "unsupported_parameter",
        ),
        (
            json!({"top_logprobs": 2}),
            "top_logprobs",
            "unsupported_parameter",
        ),
        (
            json!({"reasoning_effort": "low"}),
            "reasoning_effort",
            "unsupported_parameter",
        ),
        (
            json!({"metadata": {"a": "b"}}),
            "metadata",
            "unsupported_parameter",
        ),
        (
            json!({"logit_bias": {"1": 5}}),
            "logit_bias",
            "unsupported_parameter",
        ),
        (json!({"n": 2}), "n", "unsupported_value"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
            "invalid_value",
        ),
        (
            json!({"stream": true, "stream_options": {"include_usage": true, "chunk": 1}}),
            "stream_options.chunk",
            "unknown_parameter",
        ),
        (json!({"top_p": "high"}), "top_p", "invalid_type"),
        (json!({"seed": 1.5}), "seed", "invalid_type"),
        (json!({"private": "yes"}), "private", "invalid_type"),
        (
            json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
            "messages[0].name",
            "unsupported_parameter",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "colour": 1}]}),
            "messages[0].colour",
            "unknown_parameter",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
            "unsupported_value",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "messages[0].content",
            "unsupported_value",
        ),
        (json!({"messages": []}), "messages", "empty_array"),
        (
            json!({"stop": ["a", "b", "c", "d", "e"]}),
            "stop",
            "invalid_value",
        ),
    ] {
        let err = refused(user_says(extra.clone()));
        assert_eq!(
            (err.param.as_deref(), err.code),
            (Some(param), code),
            "{extra}: {err:?}"
        );
    }
    let err = refused(json!({"messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(
        (err.param.as_deref(), err.code),
        (Some("model"), "missing_required_parameter")
    );
}

#[test]
fn unset_values_of_unsupported_parameters_ask_for_nothing() {
    let req = chat(user_says(json!({
        "tool_choice": null, "functions": [], "metadata": {}, "logprobs": false,
        "parallel_tool_calls": false, "store": false
    })))
    .unwrap();
    assert!(req.into_route_request().is_ok());
}

#[test]
fn an_embeddings_request_becomes_an_embed_route_request() {
    let req = EmbeddingsRequest::parse(
        json!({"model": "auto", "input": ["a", "b"], "task": "embed", "private": true,
               "tenant": "t", "encoding_format": "base64", "user": "u"})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(req.base64());
    assert_eq!(
        req.into_route_request().unwrap(),
        RouteRequest {
            task: Some(Task::Embed),
            input: Some(vec!["a".to_owned(), "b".to_owned()]),
            private: true,
            tenant: Some("t".to_owned()),
            options: GenerationOptions {
                user: Some("u".to_owned()),
                ..GenerationOptions::default()
            },
            ..RouteRequest::default()
        }
    );
}

fn embed_texts(input: Value) -> Result<Vec<String>, ParamError> {
    EmbeddingsRequest::parse(json!({"input": input}).to_string().as_bytes())?
        .into_route_request()
        .map(|r| r.input.unwrap_or_default())
}

#[test]
fn token_id_inputs_are_decoded_with_cl100k_base() {
    // "hello world" and "The quick brown fox" as tiktoken encodes them
    // with cl100k_base (LangChain's OpenAIEmbeddings() sends these).
    assert_eq!(embed_texts(json!([15339, 1917])).unwrap(), ["hello world"]);
    assert_eq!(
        embed_texts(json!([[15339, 1917], [791, 4062, 14198, 39935]])).unwrap(),
        ["hello world", "The quick brown fox"]
    );
    assert_eq!(embed_texts(json!("a")).unwrap(), ["a"]);
    let nulls = json!({"input": "a", "task": null, "quality": null, "difficulty": null});
    assert!(EmbeddingsRequest::parse(nulls.to_string().as_bytes()).is_ok());
    assert_eq!(embed_texts(json!(["a", "b"])).unwrap(), ["a", "b"]);
    for (input, param) in [
        (json!([[15339], []]), "input[1]"),
        (json!([999_999_999]), "input"),
        (json!([1, "a"]), "input"),
        (json!([-1]), "input"),
    ] {
        let err = embed_texts(input.clone()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{input}: {err:?}");
    }
}

#[test]
fn embeddings_refuse_what_they_cannot_serve_by_name() {
    for (body, param, code) in [
        (
            json!({"input": "a", "dimensions": 256}),
            "dimensions",
            "unsupported_parameter",
        ),
        (
            json!({"input": "a", "quality": 0.9}),
            "quality",
            "unsupported_parameter",
        ),
        (
            json!({"input": "a", "task": "generate"}),
            "task",
            "invalid_value",
        ),
        (
            json!({"input": "a", "Private": true}),
            "Private",
            "unknown_parameter",
        ),
        (
            json!({"input": "a", "encoding_format": "int8"}),
            "encoding_format",
            "invalid_value",
        ),
    ] {
        let err = EmbeddingsRequest::parse(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            (err.param.as_deref(), err.code),
            (Some(param), code),
            "{body}"
        );
    }
}

#[test]
fn headers_fill_hints_the_body_left_out() {
    let mut headers = HeaderMap::new();
    headers.insert("x-route-max-latency-ms", "120".parse().unwrap());
    headers.insert("x-route-private", "true".parse().unwrap());
    headers.insert("x-route-task", "classify".parse().unwrap());
    let mut hints = Hints {
        max_latency_ms: Some(900),
        ..Hints::default()
    };
    hints.merge_headers(&headers).unwrap();
    assert_eq!(hints.max_latency_ms, Some(900));
    assert_eq!(hints.private, Some(true));
    assert_eq!(hints.task, Some(Task::Classify));
    headers.insert("x-route-private", "maybe".parse().unwrap());
    let err = Hints::default().merge_headers(&headers).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("x-route-private"));
}
