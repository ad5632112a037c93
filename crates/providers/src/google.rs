//! Gemini through Vertex AI (OAuth2) or the Gemini Developer API (API key):
//! `generateContent`, `streamGenerateContent?alt=sse`, and embeddings
//! (`predict` / `embedContent` on Vertex, `batchEmbedContents` on the
//! Developer API).
//!
//! Streams have no `[DONE]`: the last chunk carries `finishReason` and the
//! complete `usageMetadata`, then the connection closes. Errors are
//! `google.rpc.Status` objects, sometimes wrapped in an array.

use std::sync::Arc;

use eventsource_stream::Event;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::time::timeout_at;

use super::stream::{self, ChunkDecoder, STREAM_IDLE_TIMEOUT};
use super::transport::{self, WireRequest};
use super::{
    CallScope, ChatChunk, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
    FinishReason, Logprobs, ProviderError, ProviderKind, Role, Usage, error_class, retry_after,
};
use google_auth::{GoogleAuth, GoogleAuthError};
use secrets::Secret;

/// The protocol name.
pub const PROVIDER_TYPE: &str = "google";
/// The Developer API's key header.
pub const API_KEY_HEADER: &str = "x-goog-api-key";

/// How calls authenticate and which URL layout they use.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Vertex AI: OAuth2 tokens; project and location in the path.
    Vertex {
        /// The Google Cloud project.
        project: String,
        /// `global` or a region such as `us-central1`.
        location: String,
        /// The token source.
        auth: Arc<GoogleAuth>,
    },
    /// The Gemini Developer API with an API key.
    ApiKey(Secret),
}

/// A Gemini endpoint (Vertex or Developer API).
#[derive(Debug, Clone)]
pub struct Gemini {
    name: String,
    kind: ProviderKind,
    base_url: String,
    credentials: Result<Credentials, String>,
    http: reqwest::Client,
}

/// Where one request goes and how it authenticates, with the token in hand.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Vertex AI.
    Vertex {
        /// Scheme and host.
        base_url: &'a str,
        /// Project id.
        project: &'a str,
        /// Location.
        location: &'a str,
        /// OAuth2 access token.
        token: &'a Secret,
    },
    /// The Developer API.
    Developer {
        /// Scheme and host.
        base_url: &'a str,
        /// API key.
        api_key: &'a Secret,
    },
}

// ---- wire types -------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerateRequest<'a> {
    contents: Vec<WireContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem<'a>>,
    #[serde(skip_serializing_if = "WireGenerationConfig::is_empty")]
    generation_config: WireGenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct WireContent<'a> {
    role: &'static str,
    parts: Vec<WireTextPart<'a>>,
}

#[derive(Debug, Serialize)]
struct WireSystem<'a> {
    parts: Vec<WireTextPart<'a>>,
}

#[derive(Debug, Serialize)]
struct WireTextPart<'a> {
    text: &'a str,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    // No responseLogprobs: some Gemini models refuse it with a 400, and
    // every answer carries avgLogprobs, all the cascade's confidence needs.
}

impl WireGenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.top_p.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.seed.is_none()
    }
}

/// Gemini's seed is an int32: a wider seed is folded into its range, so the
/// same seed still samples the same way.
fn gemini_seed(seed: i64) -> Option<i32> {
    i32::try_from(seed)
        .ok()
        .or_else(|| i32::try_from(seed.rem_euclid(1 << 31)).ok())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerateResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default)]
    usage_metadata: Option<WireUsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<WirePromptFeedback>,
    #[serde(default)]
    error: Option<WireStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireCandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    avg_logprobs: Option<f64>,
    #[serde(default)]
    logprobs_result: Option<WireLogprobsResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogprobsResult {
    #[serde(default)]
    chosen_candidates: Vec<WireLogprobCandidate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogprobCandidate {
    #[serde(default)]
    log_probability: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Debug, Deserialize)]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

#[derive(Debug, Deserialize, Default)]
struct WireStatus {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireErrorBody {
    Single { error: WireStatus },
    Wrapped(Vec<WireErrorBody>),
}

#[derive(Debug, Serialize)]
struct WirePredictRequest<'a> {
    instances: Vec<WirePredictInstance<'a>>,
}

#[derive(Debug, Serialize)]
struct WirePredictInstance<'a> {
    content: &'a str,
}

#[derive(Debug, Deserialize)]
struct WirePredictResponse {
    #[serde(default)]
    predictions: Vec<WirePrediction>,
}

#[derive(Debug, Deserialize)]
struct WirePrediction {
    embeddings: WirePredictEmbedding,
}

#[derive(Debug, Deserialize)]
struct WirePredictEmbedding {
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<WirePredictStatistics>,
}

#[derive(Debug, Deserialize)]
struct WirePredictStatistics {
    #[serde(default)]
    token_count: f64,
}

#[derive(Debug, Serialize)]
struct WireEmbedContentRequest<'a> {
    content: WireSystem<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEmbedContentResponse {
    embedding: WireValues,
    #[serde(default)]
    usage_metadata: Option<WireUsageMetadata>,
}

#[derive(Debug, Deserialize)]
struct WireValues {
    values: Vec<f32>,
}

#[derive(Debug, Serialize)]
struct WireBatchEmbedRequest<'a> {
    requests: Vec<WireBatchEmbedItem<'a>>,
}

#[derive(Debug, Serialize)]
struct WireBatchEmbedItem<'a> {
    model: String,
    content: WireSystem<'a>,
}

#[derive(Debug, Deserialize)]
struct WireBatchEmbedResponse {
    embeddings: Vec<WireValues>,
}

// ---- pure functions ---------------------------------------------------

fn model_segment(model: &str) -> String {
    transport::encode_path_segment(model.strip_prefix("models/").unwrap_or(model))
}

/// The URL of `model:method` for `target`.
pub fn method_url(target: &Target<'_>, model: &str, method: &str) -> String {
    match target {
        Target::Vertex {
            base_url,
            project,
            location,
            ..
        } => transport::join_url(
            base_url,
            &format!(
                "/v1/projects/{}/locations/{}/publishers/google/models/{}:{method}",
                transport::encode_path_segment(project),
                transport::encode_path_segment(location),
                model_segment(model)
            ),
        ),
        Target::Developer { base_url, .. } => transport::join_url(
            base_url,
            &format!("/v1beta/models/{}:{method}", model_segment(model)),
        ),
    }
}

fn headers(
    provider: &str,
    target: &Target<'_>,
) -> Result<Vec<(HeaderName, http::HeaderValue)>, ProviderError> {
    let auth = match target {
        Target::Vertex { token, .. } => {
            transport::secret_header(provider, AUTHORIZATION, "Bearer ", token)?
        }
        Target::Developer { api_key, .. } => transport::secret_header(
            provider,
            HeaderName::from_static(API_KEY_HEADER),
            "",
            api_key,
        )?,
    };
    Ok(vec![transport::json_content_type(), auth])
}

/// `:generateContent`, or `:streamGenerateContent?alt=sse` when `stream`.
pub fn build_generate_request(
    provider: &str,
    target: &Target<'_>,
    req: &ChatRequest,
    stream: bool,
) -> Result<WireRequest, ProviderError> {
    let system: Vec<WireTextPart<'_>> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| WireTextPart { text: &m.content })
        .collect();
    let body = WireGenerateRequest {
        contents: req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| WireContent {
                role: if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                },
                parts: vec![WireTextPart { text: &m.content }],
            })
            .collect(),
        system_instruction: (!system.is_empty()).then_some(WireSystem { parts: system }),
        generation_config: WireGenerationConfig {
            temperature: req.temperature,
            max_output_tokens: req.max_tokens,
            stop_sequences: &req.stop,
            top_p: req.options.top_p,
            seed: req.options.seed.and_then(gemini_seed),
            presence_penalty: req.options.presence_penalty,
            frequency_penalty: req.options.frequency_penalty,
        },
    };
    let url = if stream {
        format!(
            "{}?alt=sse",
            method_url(target, &req.model, "streamGenerateContent")
        )
    } else {
        method_url(target, &req.model, "generateContent")
    };
    transport::build(
        provider,
        Method::POST,
        &url,
        headers(provider, target)?,
        transport::to_json(&body)?,
    )
}

/// Whether a Vertex embedding model is served by `:predict` (the
/// `text-embedding-*` family and `gemini-embedding-001`) rather than
/// `:embedContent`.
pub fn uses_predict(model: &str) -> bool {
    let model = model.strip_prefix("models/").unwrap_or(model);
    model.starts_with("text-embedding")
        || model.starts_with("text-multilingual-embedding")
        || model.starts_with("textembedding-gecko")
        || model == "gemini-embedding-001"
}

/// Vertex `:predict` with one instance per input.
pub fn build_predict_request(
    provider: &str,
    target: &Target<'_>,
    req: &EmbedRequest,
) -> Result<WireRequest, ProviderError> {
    let body = WirePredictRequest {
        instances: req
            .inputs
            .iter()
            .map(|text| WirePredictInstance { content: text })
            .collect(),
    };
    transport::build(
        provider,
        Method::POST,
        &method_url(target, &req.model, "predict"),
        headers(provider, target)?,
        transport::to_json(&body)?,
    )
}

/// Vertex `:embedContent` for one input.
pub fn build_embed_content_request(
    provider: &str,
    target: &Target<'_>,
    model: &str,
    input: &str,
) -> Result<WireRequest, ProviderError> {
    let body = WireEmbedContentRequest {
        content: WireSystem {
            parts: vec![WireTextPart { text: input }],
        },
    };
    transport::build(
        provider,
        Method::POST,
        &method_url(target, model, "embedContent"),
        headers(provider, target)?,
        transport::to_json(&body)?,
    )
}

/// Developer API `:batchEmbedContents`.
pub fn build_batch_embed_request(
    provider: &str,
    target: &Target<'_>,
    req: &EmbedRequest,
) -> Result<WireRequest, ProviderError> {
    let model = format!(
        "models/{}",
        req.model.strip_prefix("models/").unwrap_or(&req.model)
    );
    let body = WireBatchEmbedRequest {
        requests: req
            .inputs
            .iter()
            .map(|text| WireBatchEmbedItem {
                model: model.clone(),
                content: WireSystem {
                    parts: vec![WireTextPart { text }],
                },
            })
            .collect(),
    };
    transport::build(
        provider,
        Method::POST,
        &method_url(target, &req.model, "batchEmbedContents"),
        headers(provider, target)?,
        transport::to_json(&body)?,
    )
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        "MALFORMED_FUNCTION_CALL" => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

fn usage(meta: &WireUsageMetadata) -> Usage {
    Usage {
        input_tokens: meta.prompt_token_count + meta.tool_use_prompt_token_count,
        output_tokens: meta.candidates_token_count + meta.thoughts_token_count,
        cached_input_tokens: meta.cached_content_token_count,
        cache_write_tokens: 0,
        reasoning_tokens: meta.thoughts_token_count,
    }
}

/// Visible text of the first candidate (thought summaries left out).
fn candidate_text(candidate: &WireCandidate) -> String {
    candidate
        .content
        .as_ref()
        .map(|c| {
            c.parts
                .iter()
                .filter(|p| !p.thought)
                .filter_map(|p| p.text.as_deref())
                .collect()
        })
        .unwrap_or_default()
}

/// The chosen tokens' log-probabilities (`logprobsResult`, when a caller
/// asked for `responseLogprobs`), else the candidate's `avgLogprobs`.
fn candidate_logprobs(candidate: &WireCandidate) -> Option<Logprobs> {
    let chosen = candidate
        .logprobs_result
        .as_ref()
        .map(|r| &r.chosen_candidates)
        .filter(|c| !c.is_empty());
    match chosen {
        Some(chosen) => Logprobs::from_tokens(
            chosen
                .iter()
                .map(|c| c.log_probability.unwrap_or(f64::NAN))
                .collect(),
        ),
        None => candidate.avg_logprobs.and_then(Logprobs::from_mean),
    }
}

/// Parses a `generateContent` answer. A blocked prompt (no candidates,
/// `promptFeedback.blockReason`) is an empty, content-filtered answer.
pub fn parse_generate_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let wire: WireGenerateResponse = transport::from_json(body)?;
    if let Some(error) = wire.error {
        return Err(status_error(
            error.code.unwrap_or(200),
            &HeaderMap::new(),
            error,
        ));
    }
    let first = wire.candidates.first();
    let finish = match (
        first.and_then(|c| c.finish_reason.as_deref()),
        &wire.prompt_feedback,
    ) {
        (Some(reason), _) => finish_reason(reason),
        (None, Some(feedback)) if feedback.block_reason.is_some() => FinishReason::ContentFilter,
        (None, _) => FinishReason::Other,
    };
    Ok(ChatResponse {
        model: wire.model_version.unwrap_or_default(),
        text: first.map(candidate_text).unwrap_or_default(),
        finish_reason: finish,
        usage: wire.usage_metadata.as_ref().map(usage).unwrap_or_default(),
        logprobs: first.and_then(candidate_logprobs),
    })
}

/// Parses a Vertex `:predict` embeddings answer.
pub fn parse_predict_response(model: &str, body: &[u8]) -> Result<EmbedResponse, ProviderError> {
    let wire: WirePredictResponse = transport::from_json(body)?;
    let mut tokens = 0u64;
    let mut embeddings = Vec::with_capacity(wire.predictions.len());
    for p in wire.predictions {
        if let Some(s) = p.embeddings.statistics {
            tokens += s.token_count.max(0.0) as u64;
        }
        embeddings.push(p.embeddings.values);
    }
    Ok(EmbedResponse {
        model: model.to_owned(),
        embeddings,
        usage: Usage {
            input_tokens: tokens,
            ..Usage::default()
        },
    })
}

/// Parses one Vertex `:embedContent` answer: the vector and its tokens.
pub fn parse_embed_content_response(body: &[u8]) -> Result<(Vec<f32>, u64), ProviderError> {
    let wire: WireEmbedContentResponse = transport::from_json(body)?;
    Ok((
        wire.embedding.values,
        wire.usage_metadata.map_or(0, |u| u.prompt_token_count),
    ))
}

/// Parses a Developer API `:batchEmbedContents` answer (no usage).
pub fn parse_batch_embed_response(
    model: &str,
    body: &[u8],
) -> Result<EmbedResponse, ProviderError> {
    let wire: WireBatchEmbedResponse = transport::from_json(body)?;
    Ok(EmbedResponse {
        model: model.to_owned(),
        embeddings: wire.embeddings.into_iter().map(|e| e.values).collect(),
        usage: Usage::default(),
    })
}

/// `google.rpc.RetryInfo.retryDelay` of an error's details.
fn retry_delay(details: &[serde_json::Value]) -> Option<std::time::Duration> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .filter_map(|d| d.get("retryDelay").and_then(|v| v.as_str()))
        .find_map(retry_after::parse_go_duration)
}

/// Whether a `QuotaFailure` names a daily quota.
fn is_daily_quota(details: &[serde_json::Value]) -> bool {
    details
        .iter()
        .filter_map(|d| d.get("violations").and_then(|v| v.as_array()))
        .flatten()
        .any(|v| {
            ["quotaId", "quotaMetric"].iter().any(|k| {
                v.get(*k)
                    .and_then(|id| id.as_str())
                    .is_some_and(|id| id.contains("PerDay"))
            })
        })
}

/// The Gemini API answers a bad key with 400 INVALID_ARGUMENT and an
/// `ErrorInfo` whose reason is `API_KEY_INVALID`.
fn is_invalid_key(details: &[serde_json::Value]) -> bool {
    details.iter().any(|d| {
        d.get("reason")
            .and_then(|r| r.as_str())
            .is_some_and(|r| r == "API_KEY_INVALID")
    })
}

fn status_error(http_status: u16, headers: &HeaderMap, status: WireStatus) -> ProviderError {
    let message = status
        .message
        .unwrap_or_else(|| status.status.clone().unwrap_or_default());
    let wait = retry_delay(&status.details).or_else(|| retry_after::from_headers(headers));
    match (http_status, status.status.as_deref()) {
        (429, _) | (_, Some("RESOURCE_EXHAUSTED")) if is_daily_quota(&status.details) => {
            ProviderError::QuotaExhausted { message }
        }
        (429, _) | (_, Some("RESOURCE_EXHAUSTED")) => ProviderError::RateLimited {
            retry_after: wait,
            message,
        },
        (503, _) | (_, Some("UNAVAILABLE")) => ProviderError::Overloaded {
            retry_after: wait,
            message,
        },
        (_, Some("UNAUTHENTICATED" | "PERMISSION_DENIED")) => ProviderError::Auth { message },
        _ if is_invalid_key(&status.details) => ProviderError::Auth { message },
        (400, Some("FAILED_PRECONDITION")) => ProviderError::BadRequest { message },
        (status, _) => error_class::by_status(status, message, wait),
    }
}

/// Classifies a `google.rpc.Status` error answer, plain or array-wrapped.
/// A 429 for a `PerDay` quota is final; other 429s wait for
/// `RetryInfo.retryDelay`.
pub fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let mut parsed = serde_json::from_slice::<WireErrorBody>(body).ok();
    while let Some(WireErrorBody::Wrapped(mut list)) = parsed {
        parsed = if list.is_empty() {
            None
        } else {
            Some(list.swap_remove(0))
        };
    }
    match parsed {
        Some(WireErrorBody::Single { error }) => status_error(status.as_u16(), headers, error),
        _ => error_class::by_status(
            status.as_u16(),
            transport::excerpt(body),
            retry_after::from_headers(headers),
        ),
    }
}

/// Decodes the `alt=sse` stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    finish: Option<FinishReason>,
    /// The latest usage seen (the last chunk's is complete).
    usage: Option<Usage>,
}

impl ChunkDecoder for StreamDecoder {
    type Frame = Event;

    fn on_frame(&mut self, event: Event, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let chunk: WireGenerateResponse = transport::from_json(data.as_bytes())?;
        if let Some(error) = chunk.error {
            return Err(status_error(
                error.code.unwrap_or(200),
                &HeaderMap::new(),
                error,
            ));
        }
        if let Some(candidate) = chunk.candidates.first() {
            let text = candidate_text(candidate);
            if !text.is_empty() {
                out.push(ChatChunk::Delta { text });
            }
            if let Some(reason) = &candidate.finish_reason {
                self.finish = Some(finish_reason(reason));
            }
        } else if chunk
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some())
        {
            self.finish = Some(FinishReason::ContentFilter);
        }
        if let Some(meta) = &chunk.usage_metadata {
            self.usage = Some(usage(meta));
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        false
    }

    fn on_eof(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        match self.finish {
            Some(finish_reason) => {
                out.push(ChatChunk::Done {
                    finish_reason,
                    usage: self.usage.unwrap_or_default(),
                });
                Ok(())
            }
            None => Err(ProviderError::Transport {
                message: "the stream ended before a finishReason".to_owned(),
            }),
        }
    }
}

fn auth_error(provider: &str, error: GoogleAuthError) -> ProviderError {
    let message = format!("{provider}: {error}");
    match error {
        GoogleAuthError::Transport(_) => ProviderError::Transport { message },
        GoogleAuthError::TokenEndpoint { status, .. } if error.is_retryable() => {
            ProviderError::Upstream { status, message }
        }
        _ => ProviderError::Auth { message },
    }
}

// ---- client -----------------------------------------------------------

impl Gemini {
    /// A Vertex AI client.
    pub fn vertex(
        name: impl Into<String>,
        base_url: impl Into<String>,
        credentials: Result<Credentials, String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            kind: ProviderKind::Vertex,
            base_url: base_url.into(),
            credentials,
            http,
        }
    }

    /// A Gemini Developer API client.
    pub fn developer(
        name: impl Into<String>,
        base_url: impl Into<String>,
        api_key: Result<Secret, String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            kind: ProviderKind::Gemini,
            base_url: base_url.into(),
            credentials: api_key.map(Credentials::ApiKey),
            http,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`ProviderKind::Vertex`] or [`ProviderKind::Gemini`].
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// Runs `f` with the request target, fetching a Vertex token first.
    async fn with_target<T>(
        &self,
        cx: &CallScope<'_>,
        f: impl FnOnce(Target<'_>) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let credentials =
            self.credentials
                .as_ref()
                .map_err(|reason| ProviderError::NotConfigured {
                    provider: self.name.clone(),
                    reason: reason.clone(),
                })?;
        match credentials {
            Credentials::Vertex {
                project,
                location,
                auth,
            } => {
                let token = timeout_at(cx.deadline, auth.access_token())
                    .await
                    .map_err(|_| ProviderError::Timeout)?
                    .map_err(|e| auth_error(&self.name, e))?;
                f(Target::Vertex {
                    base_url: &self.base_url,
                    project,
                    location,
                    token: &token,
                })
            }
            Credentials::ApiKey(api_key) => f(Target::Developer {
                base_url: &self.base_url,
                api_key,
            }),
        }
    }

    /// A complete chat.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let request = self
            .with_target(cx, |t| build_generate_request(&self.name, &t, req, false))
            .await?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_generate_response(&transport::success_body(response, map_error)?)
    }

    /// A streamed chat.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let request = self
            .with_target(cx, |t| build_generate_request(&self.name, &t, req, true))
            .await?;
        let response = transport::open_stream(&self.http, request, cx.deadline, map_error).await?;
        Ok(stream::drive(
            stream::sse_frames(stream::response_bytes(response)),
            StreamDecoder::default(),
            cx.deadline,
            STREAM_IDLE_TIMEOUT,
        ))
    }

    /// Embeddings: `:predict` or `:embedContent` on Vertex,
    /// `:batchEmbedContents` on the Developer API.
    pub async fn embed(
        &self,
        req: &EmbedRequest,
        cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        let (developer, predict) = (self.kind == ProviderKind::Gemini, uses_predict(&req.model));
        if developer || predict {
            let request = self
                .with_target(cx, |t| {
                    if developer {
                        build_batch_embed_request(&self.name, &t, req)
                    } else {
                        build_predict_request(&self.name, &t, req)
                    }
                })
                .await?;
            let response = transport::exchange(&self.http, request, cx.deadline).await?;
            let body = transport::success_body(response, map_error)?;
            return if developer {
                parse_batch_embed_response(&req.model, &body)
            } else {
                parse_predict_response(&req.model, &body)
            };
        }
        let requests = self
            .with_target(cx, |t| {
                req.inputs
                    .iter()
                    .map(|input| build_embed_content_request(&self.name, &t, &req.model, input))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let calls = requests.into_iter().map(|request| async {
            let response = transport::exchange(&self.http, request, cx.deadline).await?;
            parse_embed_content_response(&transport::success_body(response, map_error)?)
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
    use proptest::prelude::*;
    use std::time::Duration;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/gemini/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gemini-2.5-flash".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "Be brief.".into(),
                },
                Message::user("Why is the sky blue?"),
                Message {
                    role: Role::Assistant,
                    content: "Rayleigh.".into(),
                },
                Message::user("More?"),
            ],
            max_tokens: Some(256),
            temperature: Some(0.5),
            stop: vec![],
            options: Default::default(),
            logprobs: false,
        }
    }

    #[test]
    fn builds_vertex_and_developer_requests() {
        let token = Secret::new("ya29.token");
        let vertex = Target::Vertex {
            base_url: "https://aiplatform.googleapis.com",
            project: "p1",
            location: "global",
            token: &token,
        };
        let r = build_generate_request("vertex", &vertex, &request(), false).unwrap();
        assert_eq!(
            r.uri(),
            "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(r.headers()["authorization"], "Bearer ya29.token");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "contents":[{"role":"user","parts":[{"text":"Why is the sky blue?"}]},
                            {"role":"model","parts":[{"text":"Rayleigh."}]},
                            {"role":"user","parts":[{"text":"More?"}]}],
                "systemInstruction":{"parts":[{"text":"Be brief."}]},
                "generationConfig":{"temperature":0.5,"maxOutputTokens":256}})
        );
        let r = build_generate_request("vertex", &vertex, &request(), true).unwrap();
        assert!(
            r.uri()
                .to_string()
                .ends_with(":streamGenerateContent?alt=sse")
        );

        let key = Secret::new("AIza-key");
        let dev = Target::Developer {
            base_url: "https://generativelanguage.googleapis.com",
            api_key: &key,
        };
        let r = build_generate_request("gemini", &dev, &request(), true).unwrap();
        assert_eq!(
            r.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(r.headers()[API_KEY_HEADER], "AIza-key");
        assert!(r.headers().get("authorization").is_none());
    }

    #[test]
    fn sampling_settings_travel_in_the_generation_config() {
        let key = Secret::new("AIza-key");
        let dev = Target::Developer {
            base_url: "https://g",
            api_key: &key,
        };
        let mut req = request();
        req.options = crate::GenerationOptions {
            top_p: Some(0.5),
            seed: Some(42),
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            user: Some("u-1".into()),
        };
        let body = |req: &ChatRequest| -> serde_json::Value {
            let r = build_generate_request("gemini", &dev, req, false).unwrap();
            serde_json::from_slice(r.body()).unwrap()
        };
        assert_eq!(
            body(&req)["generationConfig"],
            serde_json::json!({"temperature":0.5,"maxOutputTokens":256,"topP":0.5,"seed":42,
                "presencePenalty":0.25,"frequencyPenalty":-0.5})
        );
        req.options.seed = Some(i64::from(i32::MAX) + 5);
        assert_eq!(body(&req)["generationConfig"]["seed"], 4);
        req.options.seed = Some(-3);
        assert_eq!(body(&req)["generationConfig"]["seed"], -3);
    }

    #[test]
    fn parses_an_answer_with_thinking_usage() {
        let r = parse_generate_response(&fixture("generate-ok.json")).unwrap();
        assert_eq!(r.text, "Rayleigh scattering.");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.model, "gemini-2.5-flash");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 40 + 100,
                cached_input_tokens: 4,
                cache_write_tokens: 0,
                reasoning_tokens: 100,
            }
        );
        let blocked =
            parse_generate_response(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
        assert_eq!(blocked.finish_reason, FinishReason::ContentFilter);
        assert_eq!(blocked.text, "");
    }

    #[test]
    fn classifies_every_error_of_the_matrix() {
        let none = HeaderMap::new();
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &none,
            &fixture("error-quota-per-minute.json"),
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(37)),
                message:
                    "You exceeded your current quota, please check your plan and billing details."
                        .into()
            }
        );
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &none,
            &fixture("error-quota-per-day.json"),
        );
        assert!(matches!(e, ProviderError::QuotaExhausted { .. }), "{e:?}");
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &none,
            br#"{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert!(matches!(
            e,
            ProviderError::RateLimited {
                retry_after: None,
                ..
            }
        ));
        let e = map_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &none,
            br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        );
        assert!(matches!(e, ProviderError::Overloaded { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &none,
            br#"[{"error":{"code":400,"message":"The input token count (1300000) exceeds the maximum number of tokens allowed (1048575).","status":"INVALID_ARGUMENT"}}]"#,
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }), "{e:?}");
        let e = map_error(
            StatusCode::UNAUTHORIZED,
            &none,
            br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(
            StatusCode::FORBIDDEN,
            &none,
            br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = map_error(
            StatusCode::NOT_FOUND,
            &none,
            br#"{"error":{"code":404,"message":"Publisher Model was not found","status":"NOT_FOUND"}}"#,
        );
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &none,
            br#"{"error":{"code":400,"message":"Billing is disabled","status":"FAILED_PRECONDITION"}}"#,
        );
        assert!(matches!(e, ProviderError::BadRequest { .. }));
        let e = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            br#"{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}"#,
        );
        assert!(matches!(e, ProviderError::Upstream { status: 500, .. }));
        let e = map_error(StatusCode::GATEWAY_TIMEOUT, &none, b"");
        assert!(
            matches!(e, ProviderError::Upstream { status: 504, .. }),
            "{e:?}"
        );
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
    fn streams_crlf_events_and_takes_usage_from_the_last_chunk() {
        let out = run(vec![fixture("stream-ok.sse")]);
        assert_eq!(out.text, "Rayleigh scattering.");
        assert_eq!(
            out.done,
            Some((
                FinishReason::Stop,
                Usage {
                    input_tokens: 12,
                    output_tokens: 5 + 20,
                    cached_input_tokens: 0,
                    cache_write_tokens: 0,
                    reasoning_tokens: 20,
                }
            ))
        );
    }

    #[test]
    fn a_stream_cut_before_finish_is_a_transport_error() {
        let data = String::from_utf8(fixture("stream-ok.sse")).unwrap();
        let cut = data.rfind("data:").unwrap();
        let out = run(vec![data.as_bytes()[..cut].to_vec()]);
        assert_eq!(out.text, "Ray");
        assert!(matches!(out.error, Some(ProviderError::Transport { .. })));
    }

    #[test]
    fn an_error_inside_the_stream_is_classified() {
        let data = b"data: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";
        let out = run(vec![data.to_vec()]);
        assert!(matches!(out.error, Some(ProviderError::Overloaded { .. })));
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

    #[test]
    fn builds_and_parses_embeddings() {
        assert!(uses_predict("text-embedding-005"));
        assert!(uses_predict("gemini-embedding-001"));
        assert!(!uses_predict("gemini-embedding-2"));
        let token = Secret::new("t");
        let vertex = Target::Vertex {
            base_url: "https://us-central1-aiplatform.googleapis.com",
            project: "p",
            location: "us-central1",
            token: &token,
        };
        let req = EmbedRequest {
            model: "text-embedding-005".into(),
            inputs: vec!["What is your name?".into()],
        };
        let r = build_predict_request("vertex", &vertex, &req).unwrap();
        assert!(
            r.uri()
                .to_string()
                .ends_with("/models/text-embedding-005:predict")
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"instances":[{"content":"What is your name?"}]})
        );
        let e = parse_predict_response("text-embedding-005", &fixture("predict-ok.json")).unwrap();
        assert_eq!(e.embeddings, vec![vec![0.01, -0.02]]);
        assert_eq!(e.usage.input_tokens, 6);

        let r = build_embed_content_request("vertex", &vertex, "gemini-embedding-2", "hi").unwrap();
        assert!(r.uri().to_string().ends_with(":embedContent"));
        let (v, t) = parse_embed_content_response(
            br#"{"embedding":{"values":[0.5]},"usageMetadata":{"promptTokenCount":3},"truncated":false}"#,
        )
        .unwrap();
        assert_eq!((v, t), (vec![0.5], 3));

        let key = Secret::new("k");
        let dev = Target::Developer {
            base_url: "https://generativelanguage.googleapis.com",
            api_key: &key,
        };
        let req = EmbedRequest {
            model: "gemini-embedding-001".into(),
            inputs: vec!["a".into(), "b".into()],
        };
        let r = build_batch_embed_request("gemini", &dev, &req).unwrap();
        assert_eq!(
            r.uri(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["requests"][1]["model"], "models/gemini-embedding-001");
        assert_eq!(body["requests"][1]["content"]["parts"][0]["text"], "b");
        let e = parse_batch_embed_response(
            "gemini-embedding-001",
            br#"{"embeddings":[{"values":[1.0]},{"values":[2.0]}]}"#,
        )
        .unwrap();
        assert_eq!(e.embeddings, vec![vec![1.0], vec![2.0]]);
    }

    #[test]
    fn auth_failures_never_become_retryable_unless_transient() {
        let e = auth_error(
            "vertex",
            GoogleAuthError::TokenEndpoint {
                status: 400,
                error: "invalid_grant".into(),
                description: "Invalid JWT Signature.".into(),
            },
        );
        assert!(matches!(e, ProviderError::Auth { .. }));
        let e = auth_error("vertex", GoogleAuthError::Transport("refused".into()));
        assert!(matches!(e, ProviderError::Transport { .. }), "{e:?}");
    }
}
