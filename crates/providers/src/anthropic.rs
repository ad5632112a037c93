//! Anthropic Messages (`POST /v1/messages`), plain and streamed.
//!
//! Streams are SSE with named events; `message_start` carries the input
//! counts, `message_delta` the cumulative output (and sometimes repeated
//! input) counts, `message_stop` ends the stream, and `event: error` can
//! arrive inside a 200. `input_tokens` excludes cache reads and writes, so
//! they are added back to normalise.

use eventsource_stream::Event;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::stream::{self, ChunkDecoder, STREAM_IDLE_TIMEOUT};
use super::transport::{self, WireRequest};
use super::{
    CallScope, ChatChunk, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
    FinishReason, ProviderError, Role, Usage, error_class, retry_after,
};
use secrets::Secret;

/// The protocol name.
pub const PROVIDER_TYPE: &str = "anthropic";
/// The API version header value every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required; this is sent when the caller sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The Anthropic API.
#[derive(Debug, Clone)]
pub struct Anthropic {
    name: String,
    base_url: String,
    api_key: Result<Secret, String>,
    http: reqwest::Client,
}

// ---- wire types -------------------------------------------------------

#[derive(Debug, Serialize)]
struct WireRequestBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// `metadata`: the end user, for Anthropic's abuse monitoring.
#[derive(Debug, Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Deserialize)]
struct WireMessageResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<WireOutputDetails>,
}

#[derive(Debug, Deserialize, Default, Clone)]
struct WireOutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireErrorDetail,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct WireMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct WireErrorEnvelope {
    #[serde(default)]
    error: WireErrorDetail,
}

#[derive(Debug, Deserialize, Default)]
struct WireErrorDetail {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

// ---- pure functions ---------------------------------------------------

/// `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`.
pub fn build_messages_request(
    provider: &str,
    base_url: &str,
    api_key: &Secret,
    req: &ChatRequest,
    stream: bool,
) -> Result<WireRequest, ProviderError> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let body = WireRequestBody {
        model: &req.model,
        max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| WireMessage {
                role: if m.role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                },
                content: &m.content,
            })
            .collect(),
        temperature: req.temperature,
        // Current Claude models take temperature or top_p, not both.
        top_p: req.options.top_p.filter(|_| req.temperature.is_none()),
        stop_sequences: &req.stop,
        metadata: req
            .options
            .user
            .as_deref()
            .map(|user_id| WireMetadata { user_id }),
        stream,
    };
    transport::build(
        provider,
        Method::POST,
        &transport::join_url(base_url, "/v1/messages"),
        vec![
            transport::json_content_type(),
            transport::secret_header(provider, HeaderName::from_static("x-api-key"), "", api_key)?,
            (
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            ),
        ],
        transport::to_json(&body)?,
    )
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::Refusal,
        _ => FinishReason::Other,
    }
}

fn usage(wire: &WireUsage) -> Usage {
    let cache_read = wire.cache_read_input_tokens.unwrap_or(0);
    let cache_write = wire.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        input_tokens: wire.input_tokens.unwrap_or(0) + cache_read + cache_write,
        output_tokens: wire.output_tokens.unwrap_or(0),
        cached_input_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: wire
            .output_tokens_details
            .as_ref()
            .and_then(|d| d.thinking_tokens)
            .unwrap_or(0),
    }
}

/// Parses a non-streaming Messages answer.
pub fn parse_messages_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let wire: WireMessageResponse = transport::from_json(body)?;
    Ok(ChatResponse {
        model: wire.model,
        text: wire
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect(),
        finish_reason: wire
            .stop_reason
            .as_deref()
            .map_or(FinishReason::Other, finish_reason),
        usage: usage(&wire.usage),
        logprobs: None,
    })
}

fn is_spend_limit(details: Option<&serde_json::Value>) -> bool {
    details
        .and_then(|d| d.get("error_code"))
        .and_then(|c| c.as_str())
        .is_some_and(|c| c == "enforced_spend_limit_reached")
}

/// Classifies an error answer. 529 is overload; a 429 without
/// `retry-after` (a spend cap) is final.
pub fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let envelope: WireErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let error = envelope.error;
    let message = if error.message.is_empty() {
        transport::excerpt(body)
    } else {
        error.message
    };
    let wait = retry_after::from_headers(headers);
    match status.as_u16() {
        529 => ProviderError::Overloaded {
            retry_after: wait,
            message,
        },
        429 if wait.is_none() || is_spend_limit(error.details.as_ref()) => {
            ProviderError::QuotaExhausted { message }
        }
        _ if error.kind == "overloaded_error" => ProviderError::Overloaded {
            retry_after: wait,
            message,
        },
        status => error_class::by_status(status, message, wait),
    }
}

/// Classifies an `event: error` inside a 200 stream by its type.
fn in_stream_error(error: WireErrorDetail) -> ProviderError {
    let message = error.message;
    match error.kind.as_str() {
        "overloaded_error" => ProviderError::Overloaded {
            retry_after: None,
            message,
        },
        "rate_limit_error" => ProviderError::RateLimited {
            retry_after: None,
            message,
        },
        "invalid_request_error" if error_class::is_context_length_message(&message) => {
            ProviderError::ContextTooLong { message }
        }
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            ProviderError::BadRequest { message }
        }
        "authentication_error" | "permission_error" => ProviderError::Auth { message },
        "billing_error" => ProviderError::QuotaExhausted { message },
        _ => ProviderError::Upstream {
            status: 200,
            message,
        },
    }
}

/// Decodes the named-event SSE stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    usage: WireUsage,
    finish: Option<FinishReason>,
    done: bool,
}

impl StreamDecoder {
    fn merge_usage(&mut self, update: &WireUsage) {
        let u = &mut self.usage;
        // message_delta counts are cumulative: a present value replaces.
        if let Some(v) = update.input_tokens.filter(|v| *v > 0) {
            u.input_tokens = Some(v);
        }
        if update.output_tokens.is_some() {
            u.output_tokens = update.output_tokens;
        }
        if update.cache_creation_input_tokens.is_some() {
            u.cache_creation_input_tokens = update.cache_creation_input_tokens;
        }
        if update.cache_read_input_tokens.is_some() {
            u.cache_read_input_tokens = update.cache_read_input_tokens;
        }
        if update.output_tokens_details.is_some() {
            u.output_tokens_details = update.output_tokens_details.clone();
        }
    }
}

impl ChunkDecoder for StreamDecoder {
    type Frame = Event;

    fn on_frame(&mut self, event: Event, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        match transport::from_json::<WireEvent>(data.as_bytes())? {
            WireEvent::MessageStart { message } => self.merge_usage(&message.usage),
            WireEvent::ContentBlockDelta { delta } => {
                if delta.kind == "text_delta"
                    && let Some(text) = delta.text
                    && !text.is_empty()
                {
                    out.push(ChatChunk::Delta { text });
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.finish = Some(finish_reason(&reason));
                }
                if let Some(u) = usage {
                    self.merge_usage(&u);
                }
            }
            WireEvent::MessageStop => {
                self.done = true;
                out.push(ChatChunk::Done {
                    finish_reason: self.finish.unwrap_or(FinishReason::Other),
                    usage: usage(&self.usage),
                });
            }
            WireEvent::Error { error } => return Err(in_stream_error(error)),
            WireEvent::Other => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_eof(&mut self, _: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        Err(ProviderError::Transport {
            message: "the stream ended before message_stop".to_owned(),
        })
    }
}

// ---- client -----------------------------------------------------------

impl Anthropic {
    /// A client for `base_url`; `api_key` is `Err(reason)` when missing.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        api_key: Result<Secret, String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key,
            http,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> Result<&Secret, ProviderError> {
        self.api_key
            .as_ref()
            .map_err(|reason| ProviderError::NotConfigured {
                provider: self.name.clone(),
                reason: reason.clone(),
            })
    }

    /// A complete chat.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let request = build_messages_request(&self.name, &self.base_url, self.key()?, req, false)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_messages_response(&transport::success_body(response, map_error)?)
    }

    /// A streamed chat.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let request = build_messages_request(&self.name, &self.base_url, self.key()?, req, true)?;
        let response = transport::open_stream(&self.http, request, cx.deadline, map_error).await?;
        Ok(stream::drive(
            stream::sse_frames(stream::response_bytes(response)),
            StreamDecoder::default(),
            cx.deadline,
            STREAM_IDLE_TIMEOUT,
        ))
    }

    /// Anthropic has no embeddings API.
    pub async fn embed(
        &self,
        _req: &EmbedRequest,
        _cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        Err(ProviderError::BadRequest {
            message: format!("{} has no embeddings API", self.name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Message;
    use super::super::stream::testing::*;
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/anthropic/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn builds_the_messages_request() {
        let req = ChatRequest {
            model: "claude-haiku-4-5".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "Be brief.".into(),
                },
                Message::user("Hello"),
            ],
            max_tokens: None,
            temperature: Some(0.25),
            stop: vec![],
            options: Default::default(),
            logprobs: false,
        };
        let key = Secret::new("sk-ant-test");
        let r = build_messages_request("anthropic", "https://api.anthropic.com", &key, &req, true)
            .unwrap();
        assert_eq!(r.uri(), "https://api.anthropic.com/v1/messages");
        assert_eq!(r.headers()["x-api-key"], "sk-ant-test");
        assert!(r.headers()["x-api-key"].is_sensitive());
        assert_eq!(r.headers()["anthropic-version"], "2023-06-01");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model":"claude-haiku-4-5","max_tokens":4096,"system":"Be brief.",
                "messages":[{"role":"user","content":"Hello"}],"temperature":0.25,"stream":true})
        );
    }

    #[test]
    fn top_p_and_the_user_travel_in_anthropic_form() {
        let mut req = ChatRequest {
            model: "claude-haiku-4-5".into(),
            messages: vec![Message::user("Hello")],
            max_tokens: Some(10),
            temperature: None,
            stop: vec![],
            options: crate::GenerationOptions {
                top_p: Some(0.9),
                seed: Some(3),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(0.5),
                user: Some("u-1".into()),
            },
            logprobs: false,
        };
        let key = Secret::new("sk-ant-test");
        let body = |req: &ChatRequest| -> serde_json::Value {
            let r = build_messages_request("anthropic", "https://a", &key, req, false).unwrap();
            serde_json::from_slice(r.body()).unwrap()
        };
        assert_eq!(
            body(&req),
            serde_json::json!({"model":"claude-haiku-4-5","max_tokens":10,
                "messages":[{"role":"user","content":"Hello"}],"top_p":0.9,
                "metadata":{"user_id":"u-1"}})
        );
        // Claude takes temperature or top_p, not both: temperature wins.
        req.temperature = Some(0.5);
        assert_eq!(body(&req).get("top_p"), None);
    }

    #[test]
    fn parses_an_answer_and_adds_cache_tokens_to_input() {
        let r = parse_messages_response(&fixture("messages-ok.json")).unwrap();
        assert_eq!(r.text, "Hi! How can I help?");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 12 + 100 + 30,
                output_tokens: 9,
                cached_input_tokens: 100,
                cache_write_tokens: 30,
                reasoning_tokens: 0,
            }
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classifies_every_error_of_the_matrix() {
        let none = HeaderMap::new();
        let e = map_error(
            StatusCode::from_u16(529).unwrap(),
            &none,
            &fixture("error-overloaded.json"),
        );
        assert!(matches!(e, ProviderError::Overloaded { .. }));
        let rate = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}"#;
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "20")]),
            rate,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(20)));
        assert!(matches!(e, ProviderError::RateLimited { .. }));
        let e = map_error(StatusCode::TOO_MANY_REQUESTS, &none, rate);
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }));
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "20")]),
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &none,
            &fixture("error-prompt-too-long.json"),
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
        let e = map_error(
            StatusCode::UNAUTHORIZED,
            &none,
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(
            StatusCode::PAYMENT_REQUIRED,
            &none,
            br#"{"type":"error","error":{"type":"billing_error","message":"credit balance too low"}}"#,
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }));
        let e = map_error(
            StatusCode::NOT_FOUND,
            &none,
            br#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#,
        );
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
        );
        assert!(matches!(e, ProviderError::Upstream { status: 500, .. }));
    }

    fn run(chunks: Vec<Vec<u8>>) -> Outcome {
        collect(|| {
            stream::drive(
                stream::sse_frames(bytes_of(chunks)),
                StreamDecoder::default(),
                far(),
                STREAM_IDLE_TIMEOUT,
            )
        })
    }

    #[test]
    fn streams_named_events_with_cumulative_usage() {
        let out = run(vec![fixture("stream-ok.sse")]);
        assert_eq!(out.text, "Hello there");
        assert_eq!(
            out.done,
            Some((
                FinishReason::Stop,
                Usage {
                    input_tokens: 25 + 5,
                    output_tokens: 15,
                    cached_input_tokens: 5,
                    cache_write_tokens: 0,
                    reasoning_tokens: 0,
                }
            ))
        );
        assert_eq!(out.after_end, 0);
    }

    #[test]
    fn message_delta_input_wins_over_a_zero_start() {
        let data = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,\"output_tokens\":1}}}\n\n\
                    event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"input_tokens\":40,\"output_tokens\":7}}\n\n\
                    event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let out = run(vec![data.as_bytes().to_vec()]);
        let (finish, usage) = out.done.unwrap();
        assert_eq!(finish, FinishReason::Length);
        assert_eq!((usage.input_tokens, usage.output_tokens), (40, 7));
    }

    #[test]
    fn an_error_event_inside_a_200_is_an_error() {
        let out = run(vec![fixture("stream-error.sse")]);
        assert_eq!(out.text, "Hel");
        assert!(matches!(out.error, Some(ProviderError::Overloaded { .. })));
    }

    #[test]
    fn a_stream_without_message_stop_is_cut() {
        let text = String::from_utf8(fixture("stream-ok.sse")).unwrap();
        let cut = text.find("event: message_stop").unwrap();
        let out = run(vec![text.as_bytes()[..cut].to_vec()]);
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_text_and_usage(cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
            let data = fixture("stream-ok.sse");
            let whole = run(vec![data.clone()]);
            let split = run(split_at(&data, &cuts));
            prop_assert_eq!(split, whole);
        }
    }
}
