//! AWS Bedrock Runtime: `/model/{id}/converse`, `/converse-stream` (binary
//! event-stream frames with `p` padding, the final `metadata` event and
//! exceptions as frames inside a 200), `/invoke` for Titan embeddings and
//! `/count-tokens`. Requests are verified with SigV4 (service `bedrock`,
//! double-encoded path, ±5 min skew) or a Bedrock API key as Bearer token.

use std::time::{Duration, SystemTime};

use aws_eventstream::Header;
use aws_sigv4::{SigV4Error, SignableRequest};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::clock::parse_amz_date;
use crate::credentials::Credentials;
use crate::exchange::{
    Call, EmuBody, Reply, cut_body, json as json_response, malformed, set_header, streaming,
    with_body,
};
use crate::faults::Fault;
use crate::text::{Conversation, Finish, content_text, embed, estimate_tokens};

const JSON_TYPE: &str = "application/json";
const EVENTSTREAM_TYPE: &str = "application/vnd.amazon.eventstream";
const SIGNING_NAME: &str = "bedrock";
const MAX_SKEW: Duration = Duration::from_secs(300);
/// The output cap the emulator reports for every model.
const MAX_OUTPUT_TOKENS: u64 = 64_000;
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

pub(crate) async fn handle(call: &Call) -> Reply {
    let Some((model, operation)) = split_path(&call.path) else {
        return aws_error(
            call,
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "",
            "coral.service",
        )
        .into();
    };
    if let Some(reply) = check_auth(call) {
        return reply;
    }
    if call.method != Method::POST {
        return aws_error(
            call,
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "",
            "coral.service",
        )
        .into();
    }
    let cfg = &call.shared.config;
    if !cfg.accept_unlisted_models && !cfg.models.contains(&model) {
        return validation(call, "The provided model identifier is invalid.").into();
    }
    match operation {
        "converse" => converse(call, false).await,
        "converse-stream" => converse(call, true).await,
        "invoke" => invoke(call, &model).await,
        "count-tokens" => count_tokens(call),
        _ => aws_error(
            call,
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "",
            "coral.service",
        )
        .into(),
    }
}

/// `/model/{percent-encoded id}/{operation}` → (decoded id, operation).
fn split_path(path: &str) -> Option<(String, &str)> {
    let rest = path.strip_prefix("/model/")?;
    let (id, operation) = rest.rsplit_once('/')?;
    Some((percent_decode(id), operation))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A rest-json error: `{"message":..}` with `x-amzn-ErrorType`.
fn aws_error(
    call: &Call,
    status: StatusCode,
    kind: &str,
    message: &str,
    namespace: &str,
) -> Response<EmuBody> {
    let body = if message.is_empty() {
        json!({})
    } else {
        json!({ "message": message })
    };
    let mut resp = json_response(status, &body);
    let namespace = if namespace == "coral.service" {
        "http://internal.amazon.com/coral/com.amazon.coral.service/".to_owned()
    } else {
        "http://internal.amazon.com/coral/com.amazon.bedrock/".to_owned()
    };
    set_header(
        &mut resp,
        "x-amzn-ErrorType",
        &format!("{kind}:{namespace}"),
    );
    set_header(&mut resp, "x-amzn-RequestId", &request_id(call));
    resp
}

fn bedrock_error(call: &Call, status: StatusCode, kind: &str, message: &str) -> Response<EmuBody> {
    aws_error(call, status, kind, message, "bedrock")
}

fn validation(call: &Call, message: &str) -> Response<EmuBody> {
    bedrock_error(
        call,
        StatusCode::BAD_REQUEST,
        "ValidationException",
        message,
    )
}

fn request_id(call: &Call) -> String {
    let h = call.hex_id(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn forbidden(call: &Call, kind: &str, message: &str) -> Reply {
    aws_error(call, StatusCode::FORBIDDEN, kind, message, "coral.service").into()
}

fn check_auth(call: &Call) -> Option<Reply> {
    let Credentials::Aws(aws) = call.shared.credentials() else {
        return None;
    };
    let Some(authorization) = call.header("authorization") else {
        return Some(forbidden(
            call,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return match &aws.bearer_token {
            Some(expected) if expected == token.trim() => None,
            _ => Some(forbidden(
                call,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )),
        };
    }
    let Ok(parsed) = aws_sigv4::parse_authorization(authorization) else {
        return Some(forbidden(
            call,
            "IncompleteSignatureException",
            &format!(
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={authorization}"
            ),
        ));
    };
    if parsed.access_key_id != aws.access_key_id {
        return Some(forbidden(
            call,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if parsed.service != SIGNING_NAME {
        return Some(forbidden(
            call,
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: '{SIGNING_NAME}'. "),
        ));
    }
    if let Some(expected) = &aws.session_token {
        let sent = call.header("x-amz-security-token");
        let signed = parsed
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token");
        if sent != Some(expected.as_str()) || !signed {
            return Some(forbidden(
                call,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
    }
    let request = SignableRequest {
        method: call.method.as_str(),
        path: &call.path,
        query: call.query.as_deref().unwrap_or(""),
        headers: &call.headers,
        body: &call.body,
    };
    match aws_sigv4::verify(
        &request,
        &parsed,
        &aws.secret_access_key,
        SystemTime::now(),
        MAX_SKEW,
    ) {
        Ok(()) => None,
        Err(SigV4Error::Expired) => {
            let sent = call.header("x-amz-date").unwrap_or_default();
            let now = aws_sigv4::format_amz_date(SystemTime::now());
            let bound = aws_sigv4::format_amz_date(SystemTime::now() - MAX_SKEW);
            let past = parse_amz_date(sent).is_some_and(|t| t < crate::clock::unix_secs());
            let message = if past {
                format!("Signature expired: {sent} is now earlier than {bound} ({now} - 5 min.)")
            } else {
                let later = aws_sigv4::format_amz_date(SystemTime::now() + MAX_SKEW);
                format!(
                    "Signature not yet current: {sent} is still later than {later} ({now} + 5 min.)"
                )
            };
            Some(forbidden(call, "InvalidSignatureException", &message))
        }
        Err(SigV4Error::BadDate) => Some(forbidden(
            call,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )),
        Err(_) => Some(forbidden(
            call,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )),
    }
}

fn parse(call: &Call) -> Result<Map<String, Value>, Reply> {
    match call.json::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => Err(bedrock_error(
            call,
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Unexpected token",
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

/// The non-stream error for a fault, `None` for faults that alter a success.
fn fault_reply(call: &Call, fault: Fault) -> Option<Reply> {
    let resp = match fault {
        Fault::Hang => return Some(Reply::Hang),
        Fault::ConnectionReset => return Some(Reply::Reset),
        Fault::AuthFailure => {
            return Some(forbidden(
                call,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
        Fault::RateLimit => bedrock_error(
            call,
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        Fault::QuotaExhausted => bedrock_error(
            call,
            StatusCode::BAD_REQUEST,
            "ServiceQuotaExceededException",
            "Too many tokens per day, please wait before trying again.",
        ),
        Fault::ServerError | Fault::StreamError => bedrock_error(
            call,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        Fault::Unavailable | Fault::Overloaded => bedrock_error(
            call,
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        Fault::CapacityExceeded => bedrock_error(
            call,
            StatusCode::TOO_MANY_REQUESTS,
            "ModelNotReadyException",
            "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times.",
        ),
        Fault::RequestTooLarge => validation(
            call,
            &format!(
                "The maximum tokens you requested exceeds the model limit of {MAX_OUTPUT_TOKENS}. Try again with a maximum tokens value that is lower than {MAX_OUTPUT_TOKENS}."
            ),
        ),
        Fault::ContextTooLong => validation(call, "Input is too long for requested model."),
        Fault::StreamCut | Fault::MalformedJson => return None,
    };
    Some(resp.into())
}

/// The in-stream exception for a fault on converse-stream, if it has one.
fn stream_exception(fault: Fault) -> Option<(&'static str, Value)> {
    Some(match fault {
        Fault::RateLimit => (
            "throttlingException",
            json!({"message": "Too many requests, please wait before trying again."}),
        ),
        Fault::ServerError => (
            "internalServerException",
            json!({"message": "The system encountered an unexpected error during processing. Try your request again."}),
        ),
        Fault::Unavailable | Fault::Overloaded => (
            "serviceUnavailableException",
            json!({"message": "Bedrock is unable to process your request."}),
        ),
        Fault::StreamError => (
            "modelStreamErrorException",
            json!({"message": "Model stream error", "originalStatusCode": 500, "originalMessage": "Internal server error"}),
        ),
        _ => return None,
    })
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

async fn converse(call: &Call, stream: bool) -> Reply {
    let body = match parse(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return validation(call, "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null").into();
    }
    let conv = conversation(&body);
    let input = conv.prompt_tokens();
    let fault = call.fault();
    let in_stream = stream && fault.and_then(stream_exception).is_some();
    if !in_stream {
        if let Some(reply) = fault.and_then(|f| fault_reply(call, f)) {
            return reply;
        }
    }
    if input > call.flavor().context_window() {
        return validation(call, "Input is too long for requested model.").into();
    }
    let max_tokens = body
        .get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64);
    if max_tokens.is_some_and(|m| m > MAX_OUTPUT_TOKENS) {
        return fault_reply(call, Fault::RequestTooLarge).unwrap_or(Reply::Drop);
    }
    let answer = conv.answer(max_tokens);
    let output = answer.tokens();
    let usage = json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0});
    let latency_ms = (call.latency().generation_time(output).as_millis() as u64).max(1) + 200;
    if stream {
        return converse_stream(
            call,
            &answer.pieces,
            stop_reason(answer.finish),
            usage,
            latency_ms,
            fault,
        );
    }
    if let Err(reply) = call.wait_for_answer(output).await {
        return reply;
    }
    let value = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": answer.text()}]}},
        "stopReason": stop_reason(answer.finish),
        "usage": usage,
        "metrics": {"latencyMs": latency_ms},
    });
    let text = value.to_string();
    let mut resp = match fault {
        Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()),
        Some(Fault::MalformedJson) => {
            with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes()))
        }
        _ => with_body(StatusCode::OK, JSON_TYPE, text),
    };
    set_header(&mut resp, "x-amzn-RequestId", &request_id(call));
    resp.into()
}

fn padding(call: &Call) -> String {
    call.with_rng(|rng| {
        let len = rng.random_range(1..=PADDING.len());
        PADDING[..len].to_owned()
    })
}

/// One event frame; the payload gets random-length `p` padding.
fn event_frame(call: &Call, event_type: &str, mut payload: Value) -> Bytes {
    payload["p"] = json!(padding(call));
    frame(
        vec![
            Header::string(":event-type", event_type),
            Header::string(":content-type", JSON_TYPE),
            Header::string(":message-type", "event"),
        ],
        payload.to_string().into_bytes(),
    )
}

fn exception_frame(kind: &str, payload: &Value) -> Bytes {
    frame(
        vec![
            Header::string(":exception-type", kind),
            Header::string(":content-type", JSON_TYPE),
            Header::string(":message-type", "exception"),
        ],
        payload.to_string().into_bytes(),
    )
}

fn frame(headers: Vec<Header>, payload: Vec<u8>) -> Bytes {
    let message = aws_eventstream::Message {
        headers,
        payload: Bytes::from(payload),
    };
    match aws_eventstream::encode(&message) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!("event-stream encoding failed: {e}");
            Bytes::new()
        }
    }
}

fn converse_stream(
    call: &Call,
    pieces: &[String],
    stop: &str,
    usage: Value,
    latency_ms: u64,
    fault: Option<Fault>,
) -> Reply {
    let mut chunks: Vec<(u64, Bytes)> = vec![(
        0,
        event_frame(call, "messageStart", json!({"role": "assistant"})),
    )];
    for piece in pieces {
        chunks.push((
            1,
            event_frame(
                call,
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
            ),
        ));
    }
    chunks.push((
        0,
        event_frame(call, "contentBlockStop", json!({"contentBlockIndex": 0})),
    ));
    chunks.push((
        0,
        event_frame(call, "messageStop", json!({"stopReason": stop})),
    ));
    chunks.push((
        0,
        event_frame(
            call,
            "metadata",
            json!({"usage": usage, "metrics": {"latencyMs": latency_ms}}),
        ),
    ));
    let mut script;
    match fault.map(|f| (f, stream_exception(f))) {
        Some((Fault::StreamError, Some((kind, payload)))) => {
            let keep = (chunks.len() / 2).max(1);
            chunks.truncate(keep);
            chunks.push((0, exception_frame(kind, &payload)));
            script = call.script(chunks);
        }
        Some((_, Some((kind, payload)))) => {
            // Throttling and the like arrive as the first frame of a 200.
            script = call.script(vec![(0, exception_frame(kind, &payload))]);
        }
        Some((Fault::MalformedJson, None)) => {
            let mid = chunks.len() / 2;
            let broken = frame(
                vec![
                    Header::string(":event-type", "contentBlockDelta"),
                    Header::string(":content-type", JSON_TYPE),
                    Header::string(":message-type", "event"),
                ],
                malformed(br#"{"contentBlockIndex":0,"delta":{"text":"x"},"p":"abc"}"#),
            );
            if let Some(chunk) = chunks.get_mut(mid) {
                chunk.1 = broken;
            }
            script = call.script(chunks);
        }
        Some((Fault::StreamCut, None)) => script = call.script(chunks).cut_midway(),
        _ => script = call.script(chunks),
    }
    if script.steps.is_empty() {
        script.cut = true;
    }
    let mut resp = streaming(EVENTSTREAM_TYPE, call.stream(script));
    set_header(&mut resp, "x-amzn-RequestId", &request_id(call));
    resp.into()
}

async fn invoke(call: &Call, model: &str) -> Reply {
    if !model.contains("embed") {
        return validation(
            call,
            "The emulator serves InvokeModel only for embedding models; use Converse.",
        )
        .into();
    }
    let body = match parse(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let Some(text) = body.get("inputText").and_then(Value::as_str) else {
        return validation(call, "Malformed input request: #: required key [inputText] not found, please reformat your input and try again.").into();
    };
    if let Some(reply) = call.fault().and_then(|f| fault_reply(call, f)) {
        return reply;
    }
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| *d > 0)
        .unwrap_or(1024);
    let tokens = estimate_tokens(text).max(1);
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    let vector = embed(text, dims);
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens}),
    );
    set_header(&mut resp, "x-amzn-RequestId", &request_id(call));
    set_header(
        &mut resp,
        "X-Amzn-Bedrock-Input-Token-Count",
        &tokens.to_string(),
    );
    set_header(&mut resp, "X-Amzn-Bedrock-Invocation-Latency", "42");
    resp.into()
}

fn count_tokens(call: &Call) -> Reply {
    let body = match parse(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let inner = body
        .get("input")
        .and_then(|i| i.get("converse"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"inputTokens": conversation(&inner).prompt_tokens()}),
    );
    set_header(&mut resp, "x-amzn-RequestId", &request_id(call));
    resp.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_decoded_from_the_path() {
        assert_eq!(
            split_path("/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/converse"),
            Some((
                "anthropic.claude-haiku-4-5-20251001-v1:0".to_owned(),
                "converse"
            ))
        );
        assert_eq!(
            split_path(
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse-stream"
            ),
            Some((
                "arn:aws:bedrock:us-east-1:1:inference-profile/us.x".to_owned(),
                "converse-stream"
            ))
        );
        assert_eq!(split_path("/other"), None);
    }
}
