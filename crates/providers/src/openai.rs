//! OpenAI `/chat/completions` and `/embeddings`, and the servers that speak
//! them: Groq, OpenRouter, DeepSeek, Mistral, vLLM.
//!
//! Streams are SSE `data:` events ending with `data: [DONE]`; usage comes
//! in a last `choices:[]` chunk when `stream_options.include_usage` is set,
//! in Groq's `x_groq.usage`, or on Mistral's last content chunk. Comment
//! lines (`: OPENROUTER PROCESSING`, `: keep-alive`) are skipped, and an
//! `error` object inside a 200 stream (OpenRouter) is an error.

use eventsource_stream::Event;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::stream::{self, ChunkDecoder, STREAM_IDLE_TIMEOUT};
use super::transport::{self, WireRequest};
use super::{
    CallScope, ChatChunk, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
    FinishReason, Locality, Logprobs, ProviderError, Role, Usage, error_class, retry_after,
};
use secrets::Secret;

/// The protocol name.
pub const PROVIDER_TYPE: &str = "openai_compatible";

/// Which server this is; decides the few request differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// api.openai.com: `max_completion_tokens`.
    OpenAi,
    /// Groq: `x_groq` usage; 413 and 498 statuses.
    Groq,
    /// OpenRouter: comments and in-stream errors.
    OpenRouter,
    /// DeepSeek: `prompt_cache_hit_tokens`.
    DeepSeek,
    /// Mistral: no `stream_options`; usage on the last content chunk.
    Mistral,
    /// vLLM or any other compatible server.
    Vllm,
}

impl Flavor {
    fn sends_stream_options(self) -> bool {
        !matches!(self, Flavor::Mistral)
    }

    /// Mistral names the seed `random_seed`; DeepSeek has none.
    fn seed_field(self) -> Option<&'static str> {
        match self {
            Flavor::Mistral => Some("random_seed"),
            Flavor::DeepSeek => None,
            _ => Some("seed"),
        }
    }

    /// Mistral and DeepSeek take no end-user id.
    fn sends_user(self) -> bool {
        !matches!(self, Flavor::Mistral | Flavor::DeepSeek)
    }

    /// Whether the server returns `logprobs` (Groq and Mistral do not, and
    /// some servers refuse the field).
    pub fn returns_logprobs(self) -> bool {
        matches!(
            self,
            Flavor::OpenAi | Flavor::OpenRouter | Flavor::DeepSeek | Flavor::Vllm
        )
    }
}

/// One OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    name: String,
    flavor: Flavor,
    base_url: String,
    locality: Locality,
    api_key: Result<Option<Secret>, String>,
    http: reqwest::Client,
}

// ---- wire types -------------------------------------------------------

#[derive(Debug, Serialize)]
struct WireChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<WireStreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    random_seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct WireStreamOptions {
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireCompletion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireContent>,
    #[serde(default)]
    delta: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

#[derive(Debug, Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct WireTokenLogprob {
    #[serde(default)]
    logprob: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct WireContent {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireCompletionDetails>,
    /// DeepSeek.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    x_groq: Option<WireXGroq>,
    #[serde(default)]
    error: Option<WireErrorBody>,
}

#[derive(Debug, Deserialize)]
struct WireXGroq {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<String>,
}

/// `{"error":{...}}`, or vLLM's older flat `{"object":"error",...}`.
#[derive(Debug, Deserialize, Default)]
struct WireErrorEnvelope {
    #[serde(default)]
    error: Option<WireErrorBody>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
struct WireErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct WireEmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Debug, Deserialize)]
struct WireEmbedResponse {
    #[serde(default)]
    model: String,
    data: Vec<WireEmbedding>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

// ---- pure functions ---------------------------------------------------

fn auth_headers(
    provider: &str,
    api_key: Option<&Secret>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ProviderError> {
    let mut headers = vec![transport::json_content_type()];
    if let Some(key) = api_key {
        headers.push(transport::secret_header(
            provider,
            AUTHORIZATION,
            "Bearer ",
            key,
        )?);
    }
    Ok(headers)
}

/// OpenAI's reasoning models (o-series, gpt-5) refuse `logprobs` with a 400.
fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// `POST {base}/chat/completions`.
pub fn build_chat_request(
    provider: &str,
    flavor: Flavor,
    base_url: &str,
    api_key: Option<&Secret>,
    req: &ChatRequest,
    stream: bool,
) -> Result<WireRequest, ProviderError> {
    let (max_tokens, max_completion_tokens) = match flavor {
        Flavor::OpenAi => (None, req.max_tokens),
        _ => (req.max_tokens, None),
    };
    let body = WireChatRequest {
        model: &req.model,
        messages: req
            .messages
            .iter()
            .map(|m| WireMessage {
                role: match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: &m.content,
            })
            .collect(),
        stream,
        stream_options: (stream && flavor.sends_stream_options()).then_some(WireStreamOptions {
            include_usage: true,
        }),
        max_tokens,
        max_completion_tokens,
        temperature: req.temperature,
        stop: &req.stop,
        top_p: req.options.top_p,
        seed: req
            .options
            .seed
            .filter(|_| flavor.seed_field() == Some("seed")),
        random_seed: req
            .options
            .seed
            .filter(|_| flavor.seed_field() == Some("random_seed")),
        presence_penalty: req.options.presence_penalty,
        frequency_penalty: req.options.frequency_penalty,
        user: req.options.user.as_deref().filter(|_| flavor.sends_user()),
        logprobs: req.logprobs && flavor.returns_logprobs() && !is_reasoning_model(&req.model),
    };
    transport::build(
        provider,
        Method::POST,
        &transport::join_url(base_url, "/chat/completions"),
        auth_headers(provider, api_key)?,
        transport::to_json(&body)?,
    )
}

/// `POST {base}/embeddings`.
pub fn build_embed_request(
    provider: &str,
    base_url: &str,
    api_key: Option<&Secret>,
    req: &EmbedRequest,
) -> Result<WireRequest, ProviderError> {
    let body = WireEmbedRequest {
        model: &req.model,
        input: &req.inputs,
        encoding_format: "float",
    };
    transport::build(
        provider,
        Method::POST,
        &transport::join_url(base_url, "/embeddings"),
        auth_headers(provider, api_key)?,
        transport::to_json(&body)?,
    )
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

fn usage(wire: &WireUsage) -> Usage {
    let cached = wire
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
        .or(wire.prompt_cache_hit_tokens)
        .unwrap_or(0);
    Usage {
        input_tokens: wire.prompt_tokens,
        output_tokens: wire.completion_tokens,
        cached_input_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: wire
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }
}

/// Parses a non-streaming chat completion.
pub fn parse_chat_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let wire: WireCompletion = transport::from_json(body)?;
    let choice = wire.choices.into_iter().next();
    let (text, reason, logprobs) = match choice {
        Some(c) => (
            c.message.and_then(|m| m.content).unwrap_or_default(),
            c.finish_reason,
            c.logprobs.and_then(|l| l.content).and_then(|t| {
                Logprobs::from_tokens(
                    t.into_iter()
                        .map(|t| t.logprob.unwrap_or(f64::NAN))
                        .collect(),
                )
            }),
        ),
        None => (String::new(), None, None),
    };
    Ok(ChatResponse {
        model: wire.model,
        text,
        finish_reason: reason.as_deref().map_or(FinishReason::Stop, finish_reason),
        usage: wire.usage.as_ref().map(usage).unwrap_or_default(),
        logprobs,
    })
}

/// Parses an embeddings answer, ordering vectors by `index`.
pub fn parse_embed_response(body: &[u8]) -> Result<EmbedResponse, ProviderError> {
    let mut wire: WireEmbedResponse = transport::from_json(body)?;
    wire.data.sort_by_key(|d| d.index);
    Ok(EmbedResponse {
        model: wire.model,
        embeddings: wire.data.into_iter().map(|d| d.embedding).collect(),
        usage: Usage {
            input_tokens: wire.usage.map_or(0, |u| u.prompt_tokens),
            ..Usage::default()
        },
    })
}

fn code_str(code: Option<&serde_json::Value>) -> Option<&str> {
    code.and_then(serde_json::Value::as_str)
}

/// Classifies an error answer of any compatible server.
///
/// `insufficient_quota` is final; Groq's 413 (request larger than the TPM
/// limit) is a context problem; Groq's 498 (flex capacity) is overload;
/// a 429 waits for `retry-after(-ms)`, else the spent
/// `x-ratelimit-reset-*`, else the "try again in" hint; a daily or monthly
/// limit is an exhausted quota.
pub fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let envelope: WireErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let inner = envelope.error.unwrap_or_default();
    classify_error(
        status.as_u16(),
        headers,
        inner
            .message
            .or(envelope.message)
            .unwrap_or_else(|| transport::excerpt(body)),
        inner.kind.or(envelope.kind).as_deref(),
        inner.code.as_ref().or(envelope.code.as_ref()),
    )
}

/// Words of a 429 message that mean the account's allowance is spent.
const QUOTA_PHRASES: [&str; 4] = ["per day", "monthly", "usage limit", "quota"];

fn classify_error(
    status: u16,
    headers: &HeaderMap,
    message: String,
    kind: Option<&str>,
    code: Option<&serde_json::Value>,
) -> ProviderError {
    let code = code_str(code);
    if code == Some("insufficient_quota") || kind == Some("insufficient_quota") {
        return ProviderError::QuotaExhausted { message };
    }
    if code == Some("context_length_exceeded") {
        return ProviderError::ContextTooLong { message };
    }
    match status {
        413 => ProviderError::ContextTooLong { message },
        498 => ProviderError::Overloaded {
            retry_after: retry_after::from_headers(headers),
            message,
        },
        429 => {
            let retry_after = retry_after::from_headers(headers)
                .or_else(|| retry_after::from_ratelimit_reset(headers))
                .or_else(|| retry_after::from_message(&message));
            // A daily or monthly limit (Groq's TPD/RPD, Mistral's monthly
            // limit) is a quota, not a short-term limit.
            let lower = message.to_ascii_lowercase();
            let quota = QUOTA_PHRASES.iter().any(|p| lower.contains(p));
            if quota {
                ProviderError::QuotaExhausted { message }
            } else {
                ProviderError::RateLimited {
                    retry_after,
                    message,
                }
            }
        }
        _ => error_class::by_status(status, message, retry_after::from_headers(headers)),
    }
}

/// An error object inside a 200 stream (OpenRouter puts the HTTP-like
/// status in `code`).
fn in_stream_error(error: WireErrorBody) -> ProviderError {
    let status = error
        .code
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let message = error
        .message
        .unwrap_or_else(|| "error inside the stream".to_owned());
    match status {
        Some(status) => classify_error(
            status,
            &HeaderMap::new(),
            message,
            error.kind.as_deref(),
            error.code.as_ref(),
        ),
        None => match code_str(error.code.as_ref()) {
            Some("insufficient_quota") => ProviderError::QuotaExhausted { message },
            Some("context_length_exceeded") => ProviderError::ContextTooLong { message },
            _ => ProviderError::Upstream {
                status: 200,
                message,
            },
        },
    }
}

/// Decodes the SSE chat stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl ChunkDecoder for StreamDecoder {
    type Frame = Event;

    fn on_frame(&mut self, event: Event, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            out.push(ChatChunk::Done {
                finish_reason: self.finish.unwrap_or(FinishReason::Stop),
                usage: self.usage.unwrap_or_default(),
            });
            return Ok(());
        }
        let chunk: WireChunk = transport::from_json(data.as_bytes())?;
        if let Some(error) = chunk.error {
            return Err(in_stream_error(error));
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.and_then(|d| d.content)
                && !text.is_empty()
            {
                out.push(ChatChunk::Delta { text });
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(usage(u));
        }
        if let Some(x_groq) = chunk.x_groq {
            if let Some(error) = x_groq.error {
                return Err(ProviderError::Upstream {
                    status: 200,
                    message: error,
                });
            }
            if let Some(u) = &x_groq.usage
                && chunk.usage.is_none()
            {
                self.usage = Some(usage(u));
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_eof(&mut self, _: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        Err(ProviderError::Transport {
            message: "the stream ended before [DONE]".to_owned(),
        })
    }
}

// ---- client -----------------------------------------------------------

impl OpenAiCompatible {
    /// A client for `base_url`; `api_key` is `Err(reason)` when a required
    /// key is missing (every call then fails with `NotConfigured`).
    pub fn new(
        name: impl Into<String>,
        flavor: Flavor,
        base_url: impl Into<String>,
        locality: Locality,
        api_key: Result<Option<Secret>, String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            flavor,
            base_url: base_url.into(),
            locality,
            api_key,
            http,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server flavour.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Where the server runs.
    pub fn locality(&self) -> Locality {
        self.locality
    }

    fn key(&self) -> Result<Option<&Secret>, ProviderError> {
        self.api_key
            .as_ref()
            .map(Option::as_ref)
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
        let request = build_chat_request(
            &self.name,
            self.flavor,
            &self.base_url,
            self.key()?,
            req,
            false,
        )?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_chat_response(&transport::success_body(response, map_error)?)
    }

    /// A streamed chat.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let request = build_chat_request(
            &self.name,
            self.flavor,
            &self.base_url,
            self.key()?,
            req,
            true,
        )?;
        let response = transport::open_stream(&self.http, request, cx.deadline, map_error).await?;
        Ok(stream::drive(
            stream::sse_frames(stream::response_bytes(response)),
            StreamDecoder::default(),
            cx.deadline,
            STREAM_IDLE_TIMEOUT,
        ))
    }

    /// Embeddings through `/embeddings` (Groq has none and answers 404,
    /// classified as `BadRequest`).
    pub async fn embed(
        &self,
        req: &EmbedRequest,
        cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        let request = build_embed_request(&self.name, &self.base_url, self.key()?, req)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_embed_response(&transport::success_body(response, map_error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Message;
    use super::super::stream::testing::*;
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;
    use std::time::Duration;

    fn fixture(provider: &str, name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{provider}/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "You are a helpful assistant.".into(),
                },
                Message::user("Hello!"),
            ],
            max_tokens: Some(256),
            temperature: Some(0.25),
            stop: vec!["\n\n".into()],
            options: Default::default(),
            logprobs: false,
        }
    }

    #[test]
    fn sampling_settings_travel_in_each_flavours_form() {
        let mut req = request();
        req.options = crate::GenerationOptions {
            top_p: Some(0.5),
            seed: Some(42),
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            user: Some("u-1".into()),
        };
        let body = |flavor| -> serde_json::Value {
            let r = build_chat_request("p", flavor, "https://x/v1", None, &req, false).unwrap();
            serde_json::from_slice(r.body()).unwrap()
        };
        for flavor in [
            Flavor::OpenAi,
            Flavor::Groq,
            Flavor::OpenRouter,
            Flavor::Vllm,
        ] {
            let b = body(flavor);
            assert_eq!(
                (&b["top_p"], &b["seed"], &b["user"]),
                (
                    &serde_json::json!(0.5),
                    &serde_json::json!(42),
                    &serde_json::json!("u-1")
                ),
                "{flavor:?}"
            );
            assert_eq!(
                (&b["presence_penalty"], &b["frequency_penalty"]),
                (&serde_json::json!(0.25), &serde_json::json!(-0.5))
            );
        }
        let mistral = body(Flavor::Mistral);
        assert_eq!(mistral["random_seed"], 42);
        assert!(mistral.get("seed").is_none() && mistral.get("user").is_none());
        let deepseek = body(Flavor::DeepSeek);
        assert_eq!(deepseek["presence_penalty"], 0.25);
        assert!(deepseek.get("seed").is_none() && deepseek.get("user").is_none());
    }

    #[test]
    fn logprobs_are_asked_only_where_they_are_answered() {
        let asked = |flavor, model: &str| {
            let mut req = request();
            req.model = model.to_owned();
            req.logprobs = true;
            req.options.seed = Some(7);
            let r = build_chat_request("p", flavor, "http://x/v1", None, &req, false).unwrap();
            let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            (body.get("logprobs").cloned(), body.get("seed").cloned())
        };
        assert_eq!(
            asked(Flavor::OpenAi, "gpt-4.1-nano"),
            (Some(serde_json::json!(true)), Some(serde_json::json!(7)))
        );
        assert_eq!(asked(Flavor::OpenAi, "gpt-5-mini").0, None);
        assert_eq!(asked(Flavor::OpenRouter, "openai/o4-mini").0, None);
        assert_eq!(
            asked(Flavor::Vllm, "Qwen/Qwen2.5-7B-Instruct").0,
            Some(serde_json::json!(true))
        );
        assert_eq!(asked(Flavor::Groq, "llama-3.1-8b-instant").0, None);
        assert_eq!(
            asked(Flavor::DeepSeek, "deepseek-chat"),
            (Some(serde_json::json!(true)), None)
        );
    }

    #[test]
    fn builds_chat_requests_per_flavour() {
        let key = Secret::new("sk-test");
        let r = build_chat_request(
            "openai",
            Flavor::OpenAi,
            "https://api.openai.com/v1",
            Some(&key),
            &request(),
            true,
        )
        .unwrap();
        assert_eq!(r.uri(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(r.headers()["authorization"], "Bearer sk-test");
        assert!(r.headers()["authorization"].is_sensitive());
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model":"gpt-4o-mini","stream":true,
                "stream_options":{"include_usage":true},
                "messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello!"}],
                "max_completion_tokens":256,"temperature":0.25,"stop":["\n\n"]})
        );

        let r = build_chat_request(
            "groq",
            Flavor::Groq,
            "https://api.groq.com/openai/v1/",
            Some(&key),
            &request(),
            false,
        )
        .unwrap();
        assert_eq!(r.uri(), "https://api.groq.com/openai/v1/chat/completions");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["max_tokens"], 256);
        assert!(body.get("stream_options").is_none());
        assert!(body.get("max_completion_tokens").is_none());

        let r = build_chat_request(
            "vllm",
            Flavor::Vllm,
            "http://v:8000/v1",
            None,
            &request(),
            true,
        )
        .unwrap();
        assert!(r.headers().get("authorization").is_none());
        let r = build_chat_request(
            "mistral",
            Flavor::Mistral,
            "https://api.mistral.ai/v1",
            Some(&key),
            &request(),
            true,
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn parses_a_completion_with_usage_details() {
        let r = parse_chat_response(&fixture("openai", "chat-ok.json")).unwrap();
        assert_eq!(r.text, "Hello! How can I assist you today?");
        assert_eq!(r.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 19,
                output_tokens: 10,
                cached_input_tokens: 4,
                cache_write_tokens: 0,
                reasoning_tokens: 2,
            }
        );
        let r = parse_chat_response(
            br#"{"model":"deepseek-chat","choices":[{"message":{"content":"x"},"finish_reason":"length"}],
                "usage":{"prompt_tokens":10,"completion_tokens":1,"prompt_cache_hit_tokens":6,"prompt_cache_miss_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(r.usage.cached_input_tokens, 6);
        assert_eq!(r.finish_reason, FinishReason::Length);
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
            StatusCode::BAD_REQUEST,
            &none,
            &fixture("openai", "error-context-length.json"),
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }), "{e:?}");

        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &none,
            &fixture("openai", "error-insufficient-quota.json"),
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }), "{e:?}");

        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after-ms", "1500"), ("retry-after", "2")]),
            &fixture("openai", "error-rate-limit.json"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
            &fixture("openai", "error-rate-limit.json"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(360)));
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &none,
            &fixture("openai", "error-rate-limit.json"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(300)));

        let e = map_error(StatusCode::UNAUTHORIZED, &none, br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#);
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(StatusCode::NOT_FOUND, &none, br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#);
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            br#"{"error":{"message":"oops","type":"server_error","param":null,"code":null}}"#,
        );
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 500,
                message: "oops".into()
            }
        );
        let e = map_error(StatusCode::SERVICE_UNAVAILABLE, &none, b"<html>busy</html>");
        assert!(matches!(e, ProviderError::Overloaded { .. }));
    }

    #[test]
    fn classifies_groq_openrouter_and_vllm_errors() {
        let none = HeaderMap::new();
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "5")]),
            &fixture("groq", "error-rate-limit.json"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
        assert!(matches!(e, ProviderError::RateLimited { .. }));
        let e = map_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &none,
            &fixture("groq", "error-request-too-large.json"),
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
        let e = map_error(
            StatusCode::from_u16(498).unwrap(),
            &none,
            br#"{"error":{"message":"flex tier capacity exceeded","type":"capacity_exceeded","code":"capacity_exceeded"}}"#,
        );
        assert!(matches!(e, ProviderError::Overloaded { .. }));
        let e = map_error(
            StatusCode::PAYMENT_REQUIRED,
            &none,
            br#"{"error":{"code":402,"message":"Insufficient credits"}}"#,
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &none,
            br#"{"object":"error","message":"This model's maximum context length is 1024 tokens.","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &none,
            br#"{"error":{"message":"You passed 1015 input tokens and requested 10 output tokens. However, the model's context length is only 1024 tokens","type":"BadRequestError","param":"input_tokens","code":400}}"#,
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
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
    fn streams_with_include_usage() {
        let out = run(vec![fixture("openai", "chat-stream.sse")]);
        assert_eq!(out.text, "Hello there!");
        assert_eq!(
            out.done,
            Some((
                FinishReason::Stop,
                Usage {
                    input_tokens: 19,
                    output_tokens: 10,
                    cached_input_tokens: 0,
                    cache_write_tokens: 0,
                    reasoning_tokens: 0,
                }
            ))
        );
        assert_eq!(out.after_end, 0);
    }

    #[test]
    fn groq_usage_comes_from_x_groq() {
        let out = run(vec![fixture("groq", "chat-stream.sse")]);
        assert_eq!(out.text, "Hi!");
        let (_, usage) = out.done.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (18, 120));
    }

    #[test]
    fn openrouter_comments_are_skipped_and_in_stream_errors_surface() {
        let out = run(vec![fixture("openrouter", "chat-stream-error.sse")]);
        assert_eq!(out.text, "Partial");
        assert!(
            matches!(out.error, Some(ProviderError::Upstream { status: 502, .. })),
            "{:?}",
            out.error
        );
    }

    #[test]
    fn a_stream_without_done_is_cut() {
        let data = fixture("openai", "chat-stream.sse");
        let text = String::from_utf8(data).unwrap();
        let cut = text.find("data: [DONE]").unwrap();
        let out = run(vec![text.as_bytes()[..cut].to_vec()]);
        assert!(out.done.is_none());
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_text_and_usage(
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
            which in 0usize..3,
        ) {
            let data = match which {
                0 => fixture("openai", "chat-stream.sse"),
                1 => fixture("groq", "chat-stream.sse"),
                _ => fixture("openrouter", "chat-stream-error.sse"),
            };
            let whole = run(vec![data.clone()]);
            let split = run(split_at(&data, &cuts));
            prop_assert_eq!(split, whole);
        }
    }

    #[test]
    fn parses_embeddings_in_index_order() {
        let e = parse_embed_response(&fixture("openai", "embed-ok.json")).unwrap();
        assert_eq!(e.embeddings, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
        assert_eq!(e.usage.input_tokens, 8);
        let r = build_embed_request(
            "openai",
            "https://api.openai.com/v1",
            None,
            &EmbedRequest {
                model: "text-embedding-3-small".into(),
                inputs: vec!["a".into(), "b".into()],
            },
        )
        .unwrap();
        assert_eq!(r.uri(), "https://api.openai.com/v1/embeddings");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["input"], serde_json::json!(["a", "b"]));
    }
}
