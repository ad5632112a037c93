//! AWS Bedrock Runtime: `Converse`, `ConverseStream` (AWS event-stream
//! frames) and Titan embeddings through `InvokeModel`.
//!
//! Requests are signed with SigV4 (service `bedrock`; the model id is
//! percent-encoded in the path and so double-encoded in the canonical URI)
//! or carry a Bedrock API key as a Bearer token. Exceptions during a stream
//! arrive as `:message-type: exception` frames inside the 200.

use std::time::SystemTime;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::stream::{self, ChunkDecoder, STREAM_IDLE_TIMEOUT};
use super::transport::{self, WireRequest};
use super::{
    CallScope, ChatChunk, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
    FinishReason, ProviderError, Role, Usage, error_class,
};
use aws_eventstream::Message as Frame;
use aws_sigv4::{SignableRequest, SigningParams};
use secrets::Secret;

/// The protocol name.
pub const PROVIDER_TYPE: &str = "bedrock";
/// The SigV4 signing name of Bedrock Runtime.
pub const SIGNING_SERVICE: &str = "bedrock";
/// The header carrying the error type of a non-stream error.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// How Bedrock requests authenticate.
#[derive(Debug, Clone)]
pub enum BedrockAuth {
    /// SigV4 with access keys (and an optional session token).
    SigV4(aws_sigv4::Credentials),
    /// A Bedrock API key sent as `Authorization: Bearer`.
    Bearer(Secret),
}

/// Bedrock Runtime in one region.
#[derive(Debug, Clone)]
pub struct Bedrock {
    name: String,
    base_url: String,
    region: String,
    auth: Result<BedrockAuth, String>,
    http: reqwest::Client,
}

// ---- wire types -------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireConverseRequest<'a> {
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<WireText<'a>>,
    #[serde(skip_serializing_if = "WireInferenceConfig::is_empty")]
    inference_config: WireInferenceConfig<'a>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireText<'a>>,
}

#[derive(Debug, Serialize)]
struct WireText<'a> {
    text: &'a str,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireInferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
}

impl WireInferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireConverseResponse {
    output: WireOutput,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
struct WireOutput {
    #[serde(default)]
    message: Option<WireOutputMessage>,
}

#[derive(Debug, Deserialize)]
struct WireOutputMessage {
    #[serde(default)]
    content: Vec<WireOutputBlock>,
}

#[derive(Debug, Deserialize)]
struct WireOutputBlock {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlockDelta {
    #[serde(default)]
    delta: Option<WireDelta>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireMetadata {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize, Default)]
struct WireErrorBody {
    #[serde(default, alias = "Message")]
    message: Option<String>,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTitanEmbedRequest<'a> {
    input_text: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTitanEmbedResponse {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: u64,
}

// ---- pure functions ---------------------------------------------------

/// `{base}/model/{percent-encoded model id}/{operation}`.
pub fn model_url(base_url: &str, model: &str, operation: &str) -> String {
    transport::join_url(
        base_url,
        &format!(
            "/model/{}/{operation}",
            transport::encode_path_segment(model)
        ),
    )
}

/// The `Host` value the HTTP client will send for `uri` (port only when
/// not the scheme's default).
fn host_header(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    Some(match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}

/// Adds SigV4 or Bearer authorisation to a built request, as of `now`.
pub fn authorize(
    provider: &str,
    request: &mut WireRequest,
    auth: &BedrockAuth,
    region: &str,
    now: SystemTime,
) -> Result<(), ProviderError> {
    match auth {
        BedrockAuth::Bearer(key) => {
            let (name, value) = transport::secret_header(provider, AUTHORIZATION, "Bearer ", key)?;
            request.headers_mut().insert(name, value);
        }
        BedrockAuth::SigV4(credentials) => {
            let host = host_header(request.uri()).ok_or_else(|| ProviderError::NotConfigured {
                provider: provider.to_owned(),
                reason: "the base URL has no host".to_owned(),
            })?;
            let mut to_sign = request.headers().clone();
            to_sign.insert(
                HOST,
                HeaderValue::from_str(&host).map_err(|_| ProviderError::NotConfigured {
                    provider: provider.to_owned(),
                    reason: "the base URL host is not a valid header".to_owned(),
                })?,
            );
            let signed = aws_sigv4::sign(
                &SignableRequest {
                    method: request.method().as_str(),
                    path: request.uri().path(),
                    query: request.uri().query().unwrap_or(""),
                    headers: &to_sign,
                    body: request.body(),
                },
                credentials,
                &SigningParams {
                    region,
                    service: SIGNING_SERVICE,
                    time: now,
                },
            )
            .map_err(|e| ProviderError::NotConfigured {
                provider: provider.to_owned(),
                reason: format!("request signing failed: {e}"),
            })?;
            let headers = request.headers_mut();
            let header = |v: &str| {
                HeaderValue::from_str(v).map_err(|_| ProviderError::NotConfigured {
                    provider: provider.to_owned(),
                    reason: "a signature header is not a valid header value".to_owned(),
                })
            };
            headers.insert(
                HeaderName::from_static(aws_sigv4::X_AMZ_DATE),
                header(&signed.x_amz_date)?,
            );
            if let Some(token) = &signed.x_amz_security_token {
                let mut value = header(token.expose())?;
                value.set_sensitive(true);
                headers.insert(
                    HeaderName::from_static(aws_sigv4::X_AMZ_SECURITY_TOKEN),
                    value,
                );
            }
            let mut value = header(&signed.authorization)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
    }
    Ok(())
}

/// `POST /model/{id}/converse` (or `/converse-stream`), authorised as of
/// `now`. Consecutive turns of one role are merged into one message.
pub fn build_converse_request(
    provider: &str,
    base_url: &str,
    region: &str,
    auth: &BedrockAuth,
    req: &ChatRequest,
    stream: bool,
    now: SystemTime,
) -> Result<WireRequest, ProviderError> {
    let mut messages: Vec<WireMessage<'_>> = Vec::new();
    for m in req.messages.iter().filter(|m| m.role != Role::System) {
        let role = if m.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.push(WireText { text: &m.content }),
            _ => messages.push(WireMessage {
                role,
                content: vec![WireText { text: &m.content }],
            }),
        }
    }
    let body = WireConverseRequest {
        messages,
        system: req
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| WireText { text: &m.content })
            .collect(),
        inference_config: WireInferenceConfig {
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            top_p: req.options.top_p,
            stop_sequences: &req.stop,
        },
    };
    let operation = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    let mut request = transport::build(
        provider,
        Method::POST,
        &model_url(base_url, &req.model, operation),
        vec![transport::json_content_type()],
        transport::to_json(&body)?,
    )?;
    authorize(provider, &mut request, auth, region, now)?;
    Ok(request)
}

/// Whether `model` is a Titan text-embeddings model (the only embeddings
/// body this client speaks).
pub fn is_titan_embedding(model: &str) -> bool {
    model.contains("titan-embed")
}

/// `POST /model/{id}/invoke` with a Titan embeddings body for one input.
pub fn build_titan_embed_request(
    provider: &str,
    base_url: &str,
    region: &str,
    auth: &BedrockAuth,
    model: &str,
    input: &str,
    now: SystemTime,
) -> Result<WireRequest, ProviderError> {
    let mut request = transport::build(
        provider,
        Method::POST,
        &model_url(base_url, model, "invoke"),
        vec![transport::json_content_type()],
        transport::to_json(&WireTitanEmbedRequest { input_text: input })?,
    )?;
    authorize(provider, &mut request, auth, region, now)?;
    Ok(request)
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

fn usage(wire: &WireUsage) -> Usage {
    Usage {
        input_tokens: wire.input_tokens
            + wire.cache_read_input_tokens
            + wire.cache_write_input_tokens,
        output_tokens: wire.output_tokens,
        cached_input_tokens: wire.cache_read_input_tokens,
        cache_write_tokens: wire.cache_write_input_tokens,
        reasoning_tokens: 0,
    }
}

/// Parses a `Converse` answer; Bedrock does not echo the model, so `model`
/// is the requested id.
pub fn parse_converse_response(model: &str, body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let wire: WireConverseResponse = transport::from_json(body)?;
    Ok(ChatResponse {
        model: model.to_owned(),
        text: wire
            .output
            .message
            .map(|m| m.content.into_iter().filter_map(|b| b.text).collect())
            .unwrap_or_default(),
        finish_reason: wire
            .stop_reason
            .as_deref()
            .map_or(FinishReason::Other, finish_reason),
        usage: usage(&wire.usage),
        logprobs: None,
    })
}

/// Parses one Titan embeddings answer: the vector and its tokens.
pub fn parse_titan_embed_response(body: &[u8]) -> Result<(Vec<f32>, u64), ProviderError> {
    let wire: WireTitanEmbedResponse = transport::from_json(body)?;
    Ok((wire.embedding, wire.input_text_token_count))
}

/// The bare exception name: `ThrottlingException:http://...` →
/// `throttlingexception`; `com.amazon...#ValidationException` →
/// `validationexception`.
fn exception_name(raw: &str) -> String {
    let raw = raw.split(':').next().unwrap_or(raw);
    let raw = raw.rsplit('#').next().unwrap_or(raw);
    raw.trim().to_ascii_lowercase()
}

/// Classifies an exception by name (header, `__type` or `:exception-type`).
fn classify_exception(name: &str, status: u16, message: String) -> ProviderError {
    match exception_name(name).trim_end_matches("exception") {
        "throttling" => ProviderError::RateLimited {
            retry_after: None,
            message,
        },
        "modelnotready" | "serviceunavailable" => ProviderError::Overloaded {
            retry_after: None,
            message,
        },
        "servicequotaexceeded" => ProviderError::QuotaExhausted { message },
        "validation" if error_class::is_context_length_message(&message) => {
            ProviderError::ContextTooLong { message }
        }
        "validation" | "resourcenotfound" => ProviderError::BadRequest { message },
        "accessdenied"
        | "unrecognizedclient"
        | "invalidsignature"
        | "expiredtoken"
        | "incompletesignature"
        | "missingauthenticationtoken" => ProviderError::Auth { message },
        "internalserver" | "modelstreamerror" | "modelerror" | "modeltimeout" => {
            ProviderError::Upstream { status, message }
        }
        _ => error_class::by_status(status, message, None),
    }
}

/// Classifies a non-stream error from `x-amzn-ErrorType` (or `__type`).
/// Throttling carries no retry-after: the caller backs off.
pub fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let wire: WireErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = wire.message.unwrap_or_else(|| transport::excerpt(body));
    let kind = headers
        .get(ERROR_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(wire.kind);
    match kind {
        Some(kind) => classify_exception(&kind, status.as_u16(), message),
        None => error_class::by_status(status.as_u16(), message, None),
    }
}

/// Decodes `ConverseStream` frames.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    finish: Option<FinishReason>,
    done: bool,
}

impl ChunkDecoder for StreamDecoder {
    type Frame = Frame;

    fn on_frame(&mut self, frame: Frame, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        match frame.header_str(":message-type") {
            Some("exception") => {
                let kind = frame.header_str(":exception-type").unwrap_or("unknown");
                let message = serde_json::from_slice::<WireErrorBody>(&frame.payload)
                    .ok()
                    .and_then(|b| b.message)
                    .unwrap_or_else(|| transport::excerpt(&frame.payload));
                return Err(classify_exception(kind, 200, message));
            }
            Some("error") => {
                let code = frame.header_str(":error-code").unwrap_or("error");
                let message = frame.header_str(":error-message").unwrap_or("");
                return Err(ProviderError::Upstream {
                    status: 200,
                    message: format!("{code}: {message}"),
                });
            }
            _ => {}
        }
        match frame.header_str(":event-type") {
            Some("contentBlockDelta") => {
                let delta: WireBlockDelta = transport::from_json(&frame.payload)?;
                if let Some(text) = delta.delta.and_then(|d| d.text)
                    && !text.is_empty()
                {
                    out.push(ChatChunk::Delta { text });
                }
            }
            Some("messageStop") => {
                let stop: WireMessageStop = transport::from_json(&frame.payload)?;
                self.finish = Some(
                    stop.stop_reason
                        .as_deref()
                        .map_or(FinishReason::Other, finish_reason),
                );
            }
            Some("metadata") => {
                let meta: WireMetadata = transport::from_json(&frame.payload)?;
                self.done = true;
                out.push(ChatChunk::Done {
                    finish_reason: self.finish.unwrap_or(FinishReason::Other),
                    usage: usage(&meta.usage),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_eof(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        match self.finish {
            // The answer is complete but the usage event never came.
            Some(finish_reason) => {
                tracing::warn!("bedrock stream ended after messageStop without metadata");
                out.push(ChatChunk::Done {
                    finish_reason,
                    usage: Usage::default(),
                });
                Ok(())
            }
            None => Err(ProviderError::Transport {
                message: "the stream ended before messageStop".to_owned(),
            }),
        }
    }
}

// ---- client -----------------------------------------------------------

impl Bedrock {
    /// A client for `base_url` in `region`; `auth` is `Err(reason)` when
    /// no credentials are configured.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        region: impl Into<String>,
        auth: Result<BedrockAuth, String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            region: region.into(),
            auth,
            http,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn auth(&self) -> Result<&BedrockAuth, ProviderError> {
        self.auth
            .as_ref()
            .map_err(|reason| ProviderError::NotConfigured {
                provider: self.name.clone(),
                reason: reason.clone(),
            })
    }

    fn converse(&self, req: &ChatRequest, stream: bool) -> Result<WireRequest, ProviderError> {
        build_converse_request(
            &self.name,
            &self.base_url,
            &self.region,
            self.auth()?,
            req,
            stream,
            SystemTime::now(),
        )
    }

    /// A complete chat through `Converse`.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let request = self.converse(req, false)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_converse_response(&req.model, &transport::success_body(response, map_error)?)
    }

    /// A streamed chat through `ConverseStream`.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let request = self.converse(req, true)?;
        let response = transport::open_stream(&self.http, request, cx.deadline, map_error).await?;
        Ok(stream::drive(
            stream::eventstream_frames(stream::response_bytes(response)),
            StreamDecoder::default(),
            cx.deadline,
            STREAM_IDLE_TIMEOUT,
        ))
    }

    /// Titan text embeddings, one `InvokeModel` call per input.
    pub async fn embed(
        &self,
        req: &EmbedRequest,
        cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        if !is_titan_embedding(&req.model) {
            return Err(ProviderError::BadRequest {
                message: format!(
                    "{}: only Titan text-embedding models are supported for embeddings",
                    self.name
                ),
            });
        }
        let auth = self.auth()?;
        let now = SystemTime::now();
        let requests = req
            .inputs
            .iter()
            .map(|input| {
                build_titan_embed_request(
                    &self.name,
                    &self.base_url,
                    &self.region,
                    auth,
                    &req.model,
                    input,
                    now,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let calls = requests.into_iter().map(|request| async {
            let response = transport::exchange(&self.http, request, cx.deadline).await?;
            parse_titan_embed_response(&transport::success_body(response, map_error)?)
        });
        let results = futures_util::future::try_join_all(calls).await?;
        let tokens = results.iter().map(|(_, t)| t).sum();
        Ok(EmbedResponse {
            model: req.model.clone(),
            embeddings: results.into_iter().map(|(v, _)| v).collect(),
            usage: Usage {
                input_tokens: tokens,
                ..Usage::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Message;
    use super::super::stream::testing::*;
    use super::*;
    use aws_eventstream::{Header, encode};
    use proptest::prelude::*;
    use std::time::Duration;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/bedrock/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn sigv4(token: Option<&str>) -> BedrockAuth {
        BedrockAuth::SigV4(aws_sigv4::Credentials {
            access_key_id: AKID.into(),
            secret_access_key: Secret::new(SECRET),
            session_token: token.map(Secret::new),
        })
    }

    fn hello() -> ChatRequest {
        ChatRequest {
            model: "anthropic.claude-3-haiku-20240307-v1:0".into(),
            messages: vec![Message::user("Hello")],
            max_tokens: Some(64),
            temperature: None,
            stop: vec![],
            options: Default::default(),
            logprobs: false,
        }
    }

    #[test]
    fn builds_the_reference_signed_converse_request() {
        let now = aws_sigv4::parse_amz_date("20250101T000000Z").unwrap();
        let r = build_converse_request(
            "bedrock",
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "us-east-1",
            &sigv4(None),
            &hello(),
            false,
            now,
        )
        .unwrap();
        assert_eq!(
            r.uri(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            r.body().as_slice(),
            br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":64}}"#
        );
        assert_eq!(r.headers()["x-amz-date"], "20250101T000000Z");
        assert_eq!(
            r.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=9a0cb9d426720efe62b88b12bcb80d78727c5e5d600e51a16c881ae81e6793ad"
        );
        assert!(r.headers().get("host").is_none());
    }

    #[test]
    fn a_signed_request_verifies_like_an_emulator_would() {
        let now = aws_sigv4::parse_amz_date("20250101T000000Z").unwrap();
        let r = build_converse_request(
            "bedrock",
            "http://127.0.0.1:9911",
            "us-east-1",
            &sigv4(Some("session-token")),
            &hello(),
            true,
            now,
        )
        .unwrap();
        assert_eq!(r.headers()["x-amz-security-token"], "session-token");
        let mut received = r.headers().clone();
        received.insert(HOST, HeaderValue::from_static("127.0.0.1:9911"));
        let auth =
            aws_sigv4::parse_authorization(r.headers()["authorization"].to_str().unwrap()).unwrap();
        assert!(
            auth.signed_headers
                .contains(&"x-amz-security-token".to_owned())
        );
        let req = SignableRequest {
            method: "POST",
            path: r.uri().path(),
            query: "",
            headers: &received,
            body: r.body(),
        };
        assert_eq!(
            aws_sigv4::verify(&req, &auth, SECRET, now, Duration::from_secs(300)),
            Ok(())
        );
    }

    #[test]
    fn bearer_keys_and_merged_turns() {
        let mut req = hello();
        req.messages = vec![
            Message {
                role: Role::System,
                content: "Be brief.".into(),
            },
            Message::user("a"),
            Message::user("b"),
            Message {
                role: Role::Assistant,
                content: "c".into(),
            },
        ];
        let r = build_converse_request(
            "bedrock",
            "https://bedrock-runtime.eu-west-1.amazonaws.com",
            "eu-west-1",
            &BedrockAuth::Bearer(Secret::new("bedrock-key")),
            &req,
            false,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(r.headers()["authorization"], "Bearer bedrock-key");
        assert!(r.headers().get("x-amz-date").is_none());
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"messages":[{"role":"user","content":[{"text":"a"},{"text":"b"}]},
                                           {"role":"assistant","content":[{"text":"c"}]}],
                               "system":[{"text":"Be brief."}],"inferenceConfig":{"maxTokens":64}})
        );
    }

    #[test]
    fn top_p_travels_in_the_inference_config() {
        let mut req = hello();
        req.options.top_p = Some(0.5);
        req.options.seed = Some(1);
        let r = build_converse_request(
            "bedrock",
            "https://bedrock-runtime.eu-west-1.amazonaws.com",
            "eu-west-1",
            &BedrockAuth::Bearer(Secret::new("bedrock-key")),
            &req,
            false,
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body["inferenceConfig"],
            serde_json::json!({"maxTokens":64,"topP":0.5})
        );
    }

    #[test]
    fn model_arns_are_encoded_in_the_path() {
        assert_eq!(
            model_url(
                "https://h",
                "arn:aws:bedrock:us-east-1:1:inference-profile/us.x-v1:0",
                "converse"
            ),
            "https://h/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x-v1%3A0/converse"
        );
    }

    #[test]
    fn parses_a_converse_answer() {
        let r = parse_converse_response("m", &fixture("converse-ok.json")).unwrap();
        assert_eq!(r.text, "Hi! How can I help?");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 12 + 3 + 2,
                output_tokens: 9,
                cached_input_tokens: 3,
                cache_write_tokens: 2,
                reasoning_tokens: 0,
            }
        );
    }

    fn error_type(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(value));
        h
    }

    #[test]
    fn classifies_every_error_of_the_matrix() {
        let msg = |m: &str| format!(r#"{{"message":"{m}"}}"#).into_bytes();
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &error_type("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            &msg("Too many requests, please wait before trying again."),
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                retry_after: None,
                message: "Too many requests, please wait before trying again.".into()
            }
        );
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &error_type("ModelNotReadyException"),
            &msg("not ready"),
        );
        assert!(matches!(e, ProviderError::Overloaded { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &error_type("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            &msg("Input is too long for requested model."),
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &error_type("ValidationException"),
            &msg("The maximum tokens you requested exceeds the model limit of 32768"),
        );
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"__type":"com.amazon.coral.service#ServiceQuotaExceededException","message":"quota"}"#,
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }));
        let e = map_error(
            StatusCode::FORBIDDEN,
            &error_type("AccessDeniedException"),
            &msg("no access"),
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(
            StatusCode::FORBIDDEN,
            &error_type("InvalidSignatureException"),
            &msg("Signature expired"),
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(
            StatusCode::NOT_FOUND,
            &error_type("ResourceNotFoundException"),
            &msg("x"),
        );
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &error_type("InternalServerException"),
            &msg("x"),
        );
        assert!(matches!(e, ProviderError::Upstream { status: 500, .. }));
        let e = map_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &error_type("ServiceUnavailableException"),
            &msg("x"),
        );
        assert!(matches!(e, ProviderError::Overloaded { .. }));
        let e = map_error(
            StatusCode::from_u16(424).unwrap(),
            &error_type("ModelErrorException"),
            &msg("x"),
        );
        assert!(
            matches!(e, ProviderError::Upstream { status: 424, .. }),
            "{e:?}"
        );
    }

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode(&Frame {
            headers: vec![
                Header::string(":event-type", kind),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: bytes::Bytes::from(payload.to_owned()),
        })
        .unwrap()
    }

    fn exception(kind: &str, payload: &str) -> Vec<u8> {
        encode(&Frame {
            headers: vec![
                Header::string(":exception-type", kind),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ],
            payload: bytes::Bytes::from(payload.to_owned()),
        })
        .unwrap()
    }

    fn converse_stream() -> Vec<u8> {
        [
            event("messageStart", r#"{"role":"assistant","p":"abcdefghijk"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcdefghijklmnopqrstuvwxyzABCDEF"}"#,
            ),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"!"},"p":"abcd"}"#,
            ),
            event("contentBlockStop", r#"{"contentBlockIndex":0,"p":"abcdefgh"}"#),
            event(
                "messageStop",
                r#"{"stopReason":"end_turn","p":"abcdefghijklmnopqrstuvwxy"}"#,
            ),
            event(
                "metadata",
                r#"{"usage":{"inputTokens":12,"outputTokens":9,"totalTokens":21},"metrics":{"latencyMs":398},"p":"abcdef"}"#,
            ),
        ]
        .concat()
    }

    fn run(chunks: Vec<Vec<u8>>) -> Outcome {
        collect(|| {
            stream::drive(
                stream::eventstream_frames(bytes_of(chunks)),
                StreamDecoder::default(),
                far(),
                STREAM_IDLE_TIMEOUT,
            )
        })
    }

    #[test]
    fn the_stored_stream_fixture_is_the_encoded_reference_sequence() {
        assert_eq!(fixture("converse-stream.bin"), converse_stream());
    }

    #[test]
    fn streams_text_and_metadata_usage() {
        let out = run(vec![converse_stream()]);
        assert_eq!(out.text, "Hi!");
        assert_eq!(
            out.done,
            Some((
                FinishReason::Stop,
                Usage {
                    input_tokens: 12,
                    output_tokens: 9,
                    ..Usage::default()
                }
            ))
        );
    }

    #[test]
    fn exception_frames_inside_a_200_are_errors() {
        let data = [
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
            ),
            exception(
                "throttlingException",
                r#"{"message":"Too many requests, please wait before trying again."}"#,
            ),
        ]
        .concat();
        let out = run(vec![data]);
        assert_eq!(out.text, "Hi");
        assert!(matches!(out.error, Some(ProviderError::RateLimited { .. })));
        let out = run(vec![exception(
            "modelStreamErrorException",
            r#"{"message":"bad","originalStatusCode":424}"#,
        )]);
        assert!(matches!(
            out.error,
            Some(ProviderError::Upstream { status: 200, .. })
        ));
        let out = run(vec![exception(
            "validationException",
            r#"{"message":"Input is too long for requested model."}"#,
        )]);
        assert!(matches!(
            out.error,
            Some(ProviderError::ContextTooLong { .. })
        ));
    }

    #[test]
    fn cut_streams_are_transport_errors() {
        let data = converse_stream();
        let out = run(vec![data[..data.len() - 10].to_vec()]);
        assert_eq!(out.text, "Hi!");
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
        let first_two = [
            event("messageStart", r#"{"role":"assistant"}"#),
            event(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
            ),
        ]
        .concat();
        let out = run(vec![first_two]);
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_text_and_usage(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let data = converse_stream();
            let whole = run(vec![data.clone()]);
            let split = run(split_at(&data, &cuts));
            prop_assert_eq!(split, whole);
        }
    }

    #[test]
    fn titan_embeddings() {
        assert!(is_titan_embedding("amazon.titan-embed-text-v2:0"));
        let r = build_titan_embed_request(
            "bedrock",
            "https://h",
            "us-east-1",
            &BedrockAuth::Bearer(Secret::new("k")),
            "amazon.titan-embed-text-v2:0",
            "hi",
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            r.uri(),
            "https://h/model/amazon.titan-embed-text-v2%3A0/invoke"
        );
        assert_eq!(r.body().as_slice(), br#"{"inputText":"hi"}"#);
        let (v, t) =
            parse_titan_embed_response(br#"{"embedding":[0.1,0.2],"inputTextTokenCount":7}"#)
                .unwrap();
        assert_eq!((v, t), (vec![0.1, 0.2], 7));
    }
}
