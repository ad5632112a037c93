//! Anthropic's Messages API: `/v1/messages` (named SSE events with `ping`
//! and an unknown event interleaved, cumulative `message_delta` usage),
//! `/v1/messages/count_tokens` and `/v1/models`. Requires `x-api-key` (or a
//! Bearer token) and `anthropic-version`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::clock::{rfc3339, unix_secs};
use crate::credentials::Credentials;
use crate::exchange::{
    Call, EmuBody, Reply, cut_body, json as json_response, malformed, set_header, streaming,
    with_body,
};
use crate::faults::Fault;
use crate::text::{Conversation, Finish, content_text};

const SSE_TYPE: &str = "text/event-stream; charset=utf-8";
const JSON_TYPE: &str = "application/json";
/// Versions the API accepts.
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];
const RPM: u64 = 4_000;
const TPM: u64 = 2_000_000;

pub(crate) async fn handle(call: &Call) -> Reply {
    if let Some(reply) = check_auth(call) {
        return reply;
    }
    match (&call.method, call.path.as_str()) {
        (&Method::POST, "/v1/messages") => messages(call).await,
        (&Method::POST, "/v1/messages/count_tokens") => count_tokens(call),
        (&Method::GET, "/v1/models") => models(call),
        _ => error(call, StatusCode::NOT_FOUND, "not_found_error", "Not found").into(),
    }
}

/// The standard error body, with the request id.
fn error(call: &Call, status: StatusCode, kind: &str, message: &str) -> Response<EmuBody> {
    error_with(call, status, json!({"type": kind, "message": message}))
}

fn error_with(call: &Call, status: StatusCode, inner: Value) -> Response<EmuBody> {
    let request_id = format!("req_011C{}", call.id(20));
    let mut resp = json_response(
        status,
        &json!({"type": "error", "error": inner, "request_id": request_id}),
    );
    set_header(&mut resp, "request-id", &request_id);
    set_header(
        &mut resp,
        "x-should-retry",
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            "true"
        } else {
            "false"
        },
    );
    resp
}

fn check_auth(call: &Call) -> Option<Reply> {
    let Credentials::ApiKey(expected) = call.shared.credentials() else {
        return None;
    };
    let sent = call.header("x-api-key").or_else(|| {
        call.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    });
    match sent {
        Some(key) if key == expected => None,
        Some(_) => Some(auth_failure(call)),
        None => Some(
            error(
                call,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
            )
            .into(),
        ),
    }
}

fn auth_failure(call: &Call) -> Reply {
    error(
        call,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid x-api-key",
    )
    .into()
}

fn check_version(call: &Call) -> Option<Reply> {
    match call.header("anthropic-version") {
        None => Some(
            error(
                call,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "anthropic-version: header is required",
            )
            .into(),
        ),
        Some(v) if !VERSIONS.contains(&v) => Some(
            error(
                call,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("anthropic-version: \"{v}\" is not a valid version"),
            )
            .into(),
        ),
        Some(_) => None,
    }
}

/// The rate-limit and id headers of a success.
fn success_headers(call: &Call, resp: &mut Response<EmuBody>, tokens: u64) {
    set_header(resp, "request-id", &format!("req_011C{}", call.id(20)));
    set_header(
        resp,
        "anthropic-organization-id",
        "00000000-0000-4000-8000-00000000e301",
    );
    let reset = rfc3339(unix_secs() + 1);
    let remaining_req = RPM.saturating_sub(call.seq);
    let remaining_tok = TPM.saturating_sub(tokens);
    for (name, limit, remaining) in [
        ("requests", RPM, remaining_req),
        ("tokens", TPM, remaining_tok),
        ("input-tokens", TPM, remaining_tok),
        ("output-tokens", TPM / 5, (TPM / 5).saturating_sub(tokens)),
    ] {
        set_header(
            resp,
            &format!("anthropic-ratelimit-{name}-limit"),
            &limit.to_string(),
        );
        set_header(
            resp,
            &format!("anthropic-ratelimit-{name}-remaining"),
            &remaining.to_string(),
        );
        set_header(resp, &format!("anthropic-ratelimit-{name}-reset"), &reset);
    }
}

fn parse(call: &Call) -> Result<Map<String, Value>, Reply> {
    match call.json::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => Err(error(
            call,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "There was an issue with your request. Please check your request body is valid JSON.",
        )
        .into()),
    }
}

fn conversation(body: &Map<String, Value>) -> Conversation {
    let mut conv = Conversation::default();
    if let Some(system) = body.get("system") {
        let text = content_text(system);
        if !text.is_empty() {
            conv.push("system", text);
        }
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        conv.push(role, content_text(m.get("content").unwrap_or(&Value::Null)));
    }
    conv
}

fn count_tokens(call: &Call) -> Reply {
    if let Some(reply) = check_version(call) {
        return reply;
    }
    match parse(call) {
        Ok(body) => {
            let mut resp = json_response(
                StatusCode::OK,
                &json!({"input_tokens": conversation(&body).prompt_tokens()}),
            );
            success_headers(call, &mut resp, 0);
            resp.into()
        }
        Err(reply) => reply,
    }
}

fn models(call: &Call) -> Reply {
    let data: Vec<Value> = call
        .shared
        .config
        .models
        .iter()
        .map(|id| json!({"type":"model","id":id,"display_name":id,"created_at":"2025-10-01T00:00:00Z"}))
        .collect();
    let first = data
        .first()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    let last = data
        .last()
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned);
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
    );
    success_headers(call, &mut resp, 0);
    resp.into()
}

fn fault_reply(call: &Call, fault: Fault, prompt_tokens: u64) -> Option<Reply> {
    let resp = match fault {
        Fault::Hang => return Some(Reply::Hang),
        Fault::ConnectionReset => return Some(Reply::Reset),
        Fault::AuthFailure => return Some(auth_failure(call)),
        Fault::RateLimit => {
            let mut resp = error(
                call,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization (00000000-0000-4000-8000-00000000e301) of 2,000,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
            );
            set_header(&mut resp, "retry-after", "7");
            success_headers(call, &mut resp, TPM);
            resp
        }
        Fault::QuotaExhausted => error_with(
            call,
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "type": "rate_limit_error",
                "message": "You have reached your specified workspace API usage limits. You will regain access on 2026-12-01 at 00:00 UTC.",
                "details": {"error_code": "enforced_spend_limit_reached"},
            }),
        ),
        Fault::ServerError | Fault::StreamError => error(
            call,
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        ),
        Fault::Unavailable => error(
            call,
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "Service unavailable",
        ),
        Fault::Overloaded | Fault::CapacityExceeded => error(
            call,
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        ),
        Fault::RequestTooLarge => error(
            call,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        Fault::ContextTooLong => {
            prompt_too_long(call, prompt_tokens.max(call.flavor().context_window() + 1))
        }
        Fault::StreamCut | Fault::MalformedJson => return None,
    };
    Some(resp.into())
}

fn prompt_too_long(call: &Call, tokens: u64) -> Response<EmuBody> {
    error(
        call,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        &format!(
            "prompt is too long: {tokens} tokens > {} maximum",
            call.flavor().context_window()
        ),
    )
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    })
}

async fn messages(call: &Call) -> Reply {
    if let Some(reply) = check_version(call) {
        return reply;
    }
    let body = match parse(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let bad = |message: &str| -> Reply {
        error(
            call,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message,
        )
        .into()
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return bad("model: Field required");
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return bad("max_tokens: Field required");
    };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return bad("messages: Field required");
    }
    let cfg = &call.shared.config;
    if !cfg.accept_unlisted_models && !cfg.models.contains(&model) {
        return error(
            call,
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("model: {model}"),
        )
        .into();
    }
    let conv = conversation(&body);
    let input = conv.prompt_tokens();
    let fault = call.fault();
    if let Some(reply) = fault
        .filter(|f| !(*f == Fault::StreamError && body.get("stream") == Some(&json!(true))))
        .and_then(|f| fault_reply(call, f, input))
    {
        return reply;
    }
    let window = call.flavor().context_window();
    if input > window {
        return prompt_too_long(call, input).into();
    }
    if input + max_tokens > window {
        return bad(&format!(
            "input length and `max_tokens` exceed context limit: {input} + {max_tokens} > {window}, decrease input length or `max_tokens` and try again"
        ));
    }
    let answer = conv.answer(Some(max_tokens));
    let stop_reason = match answer.finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    };
    let id = format!("msg_01{}", call.id(22));
    let output = answer.tokens();
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return stream(call, &id, &model, &answer.pieces, stop_reason, input, fault);
    }
    if let Err(reply) = call.wait_for_answer(output).await {
        return reply;
    }
    let value = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text()}],
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(input, output),
    });
    let text = value.to_string();
    let mut resp = match fault {
        Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()),
        Some(Fault::MalformedJson) => {
            with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes()))
        }
        _ => with_body(StatusCode::OK, JSON_TYPE, text),
    };
    success_headers(call, &mut resp, input + output);
    resp.into()
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn stream(
    call: &Call,
    id: &str,
    model: &str,
    pieces: &[String],
    stop_reason: &str,
    input: u64,
    fault: Option<Fault>,
) -> Reply {
    let output = pieces.len() as u64;
    let mut start_usage = usage(input, 1);
    if let Some(obj) = start_usage.as_object_mut() {
        obj.remove("service_tier");
    }
    let mut chunks: Vec<(u64, Bytes)> = vec![
        (
            0,
            event(
                "message_start",
                &json!({
                    "type": "message_start",
                    "message": {"id": id, "type": "message", "role": "assistant", "content": [], "model": model,
                                "stop_reason": null, "stop_sequence": null, "usage": start_usage},
                }),
            ),
        ),
        (
            0,
            event(
                "content_block_start",
                &json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
        ),
        (
            0,
            Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"),
        ),
    ];
    let unknown_at = pieces.len() / 2;
    for (i, piece) in pieces.iter().enumerate() {
        chunks.push((1, event("content_block_delta", &json!({
            "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece},
        }))));
        if i == unknown_at {
            // New event types appear over time; clients must skip them.
            chunks.push((
                0,
                event(
                    "unknown_future_event",
                    &json!({"type": "unknown_future_event", "detail": {}}),
                ),
            ));
            chunks.push((
                0,
                Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n"),
            ));
        }
    }
    chunks.push((
        0,
        event(
            "content_block_stop",
            &json!({"type":"content_block_stop","index":0}),
        ),
    ));
    chunks.push((0, event("message_delta", &json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output},
    }))));
    chunks.push((0, event("message_stop", &json!({"type":"message_stop"}))));
    let mut script = call.script(chunks);
    match fault {
        Some(Fault::StreamCut) => script = script.cut_midway(),
        Some(Fault::StreamError) => {
            let keep = (script.steps.len() / 2).max(1);
            script.steps.truncate(keep);
            script.steps.push((
                Duration::ZERO,
                event("error", &json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})),
            ));
        }
        Some(Fault::MalformedJson) => {
            let mid = script.steps.len() / 2;
            if let Some(step) = script.steps.get_mut(mid) {
                step.1 = Bytes::from(format!(
                    "event: content_block_delta\ndata: {}\n\n",
                    String::from_utf8_lossy(&malformed(br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#))
                ));
            }
        }
        _ => {}
    }
    let mut resp = streaming(SSE_TYPE, call.stream(script));
    set_header(&mut resp, "cache-control", "no-cache");
    success_headers(call, &mut resp, input + output);
    resp.into()
}
