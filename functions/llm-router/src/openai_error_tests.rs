use super::*;

fn downstream(status: u16, kind: &str, retry_after_secs: Option<u16>) -> OpenAiError {
    OpenAiError::Router(RouterError::from(InvokeError::Failed {
        function: "provider-proxy".to_owned(),
        status,
        detail: Box::new(ErrorDetail::new(kind, format!("groq: {kind}"))),
        retry_after_secs,
    }))
}

fn parts(e: &OpenAiError) -> (u16, serde_json::Value, Option<String>, Option<String>) {
    let c = e.conform();
    let response = e.response();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        c.status.as_u16(),
        serde_json::to_value(&c.body).unwrap(),
        header("retry-after"),
        header("x-should-retry"),
    )
}

#[test]
fn a_provider_rate_limit_is_openais_429_with_the_providers_wait() {
    let (status, body, retry_after, _) = parts(&downstream(429, "rate_limited", Some(3)));
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limit_exceeded");
    assert_eq!(retry_after.as_deref(), Some("3"));
    let (_, _, retry_after, _) = parts(&downstream(429, "rate_limited", None));
    assert_eq!(retry_after, None);
}

#[test]
fn an_exhausted_quota_says_a_retry_cannot_help() {
    let (status, body, retry_after, should_retry) =
        parts(&downstream(429, "quota_exhausted", Some(60)));
    assert_eq!(status, 429);
    assert_eq!(
        (&body["type"], &body["code"]),
        (&"insufficient_quota".into(), &"insufficient_quota".into())
    );
    assert_eq!(retry_after, None);
    assert_eq!(should_retry.as_deref(), Some("false"));
}

#[test]
fn a_context_overflow_is_openais_400_context_length_exceeded() {
    let (status, body, _, _) = parts(&downstream(413, "context_too_long", None));
    assert_eq!(status, 400);
    assert_eq!(body["type"], "invalid_request_error");
    assert_eq!(body["code"], "context_length_exceeded");
    assert_eq!(body["param"], "messages");
}

#[test]
fn other_failures_keep_a_code() {
    for (status, kind, want_status, want_code) in [
        (503, "overloaded", 503, "overloaded"),
        (503, "not_configured", 503, "provider_not_configured"),
        (502, "upstream", 502, "upstream_error"),
        (504, "timeout", 504, "timeout"),
        (
            403,
            "private_request_refused",
            403,
            "private_request_refused",
        ),
    ] {
        let (got_status, body, _, _) = parts(&downstream(status, kind, None));
        assert_eq!(
            (got_status, body["code"].as_str()),
            (want_status, Some(want_code)),
            "{kind}"
        );
    }
    let (status, body, _, _) = parts(&OpenAiError::ModelNotFound("x/y".to_owned()));
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("model_not_found"))
    );
}

#[test]
fn a_refused_field_names_itself_and_its_code() {
    let e = OpenAiError::from(ParamError::unknown("Private", &["private"]));
    let (status, body, _, _) = parts(&e);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({"message": "Unknown parameter: 'Private'. Did you mean 'private'?",
            "type": "invalid_request_error", "param": "Private", "code": "unknown_parameter"})
    );
}

#[test]
fn a_failure_inside_a_stream_is_framed_in_openais_terms() {
    let error = stream_error(&ErrorDetail::new("rate_limited", "groq: slow down"));
    assert_eq!(
        error,
        serde_json::json!({"message": "groq: slow down", "type": "requests", "param": null,
            "code": "rate_limit_exceeded"})
    );
    let error = stream_error(&ErrorDetail::new("transport", "cut"));
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "upstream_error");
}
