//! Ollama's native API: `/api/chat` (JSON or NDJSON stream), `/api/embed`,
//! `/api/tags`.
//!
//! Metrics are Go `omitempty`: a count of 0 is left out, so every count
//! defaults to 0. An error during a stream arrives as a last
//! `{"error":".."}` line on the 200 response.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::stream::{self, ChunkDecoder, STREAM_IDLE_TIMEOUT};
use super::transport::{self, WireRequest};
use super::{
    CallScope, ChatChunk, ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse,
    FinishReason, Locality, Logprobs, ProviderError, Role, Usage, error_class,
};

/// The protocol name.
pub const PROVIDER_TYPE: &str = "ollama";

/// An Ollama server.
#[derive(Debug, Clone)]
pub struct Ollama {
    name: String,
    base_url: String,
    locality: Locality,
    http: reqwest::Client,
}

// ---- wire types -------------------------------------------------------

#[derive(Debug, Serialize)]
struct WireChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "WireOptions::is_empty")]
    options: WireOptions<'a>,
    /// Ollama 0.12.11 and later: the tokens' log-probabilities.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize, Default)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
}

impl WireOptions<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.num_predict.is_none()
            && self.stop.is_empty()
            && self.top_p.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.seed.is_none()
    }
}

#[derive(Debug, Deserialize)]
struct WireChatLine {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: Option<WireContent>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    logprobs: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, Deserialize)]
struct WireTokenLogprob {
    #[serde(default)]
    logprob: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct WireContent {
    #[serde(default)]
    content: String,
}

#[derive(Debug, Serialize)]
struct WireEmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Debug, Deserialize)]
struct WireEmbedResponse {
    #[serde(default)]
    model: String,
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

#[derive(Debug, Deserialize)]
struct WireTags {
    #[serde(default)]
    models: Vec<WireTag>,
}

#[derive(Debug, Deserialize)]
struct WireTag {
    name: String,
}

#[derive(Debug, Deserialize)]
struct WireError {
    error: String,
}

// ---- pure functions ---------------------------------------------------

/// `POST {base}/api/chat`.
pub fn build_chat_request(
    provider: &str,
    base_url: &str,
    req: &ChatRequest,
    stream: bool,
) -> Result<WireRequest, ProviderError> {
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
        options: WireOptions {
            temperature: req.temperature,
            num_predict: req.max_tokens,
            stop: &req.stop,
            top_p: req.options.top_p,
            seed: req.options.seed,
            presence_penalty: req.options.presence_penalty,
            frequency_penalty: req.options.frequency_penalty,
        },
        logprobs: req.logprobs,
    };
    transport::build(
        provider,
        Method::POST,
        &transport::join_url(base_url, "/api/chat"),
        vec![transport::json_content_type()],
        transport::to_json(&body)?,
    )
}

/// `POST {base}/api/embed`.
pub fn build_embed_request(
    provider: &str,
    base_url: &str,
    req: &EmbedRequest,
) -> Result<WireRequest, ProviderError> {
    let body = WireEmbedRequest {
        model: &req.model,
        input: &req.inputs,
    };
    transport::build(
        provider,
        Method::POST,
        &transport::join_url(base_url, "/api/embed"),
        vec![transport::json_content_type()],
        transport::to_json(&body)?,
    )
}

/// `GET {base}/api/tags`.
pub fn build_tags_request(provider: &str, base_url: &str) -> Result<WireRequest, ProviderError> {
    transport::build(
        provider,
        Method::GET,
        &transport::join_url(base_url, "/api/tags"),
        vec![],
        vec![],
    )
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some(_) => FinishReason::Other,
    }
}

fn usage(line: &WireChatLine) -> Usage {
    Usage {
        input_tokens: line.prompt_eval_count,
        output_tokens: line.eval_count,
        ..Usage::default()
    }
}

/// Parses a `stream:false` chat answer.
pub fn parse_chat_response(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    let line: WireChatLine = transport::from_json(body)?;
    if let Some(error) = line.error {
        return Err(ProviderError::Upstream {
            status: 200,
            message: error,
        });
    }
    Ok(ChatResponse {
        usage: usage(&line),
        finish_reason: finish_reason(line.done_reason.as_deref()),
        text: line.message.map(|m| m.content).unwrap_or_default(),
        model: line.model,
        logprobs: line.logprobs.and_then(|l| {
            Logprobs::from_tokens(
                l.into_iter()
                    .map(|t| t.logprob.unwrap_or(f64::NAN))
                    .collect(),
            )
        }),
    })
}

/// Parses an `/api/embed` answer.
pub fn parse_embed_response(body: &[u8]) -> Result<EmbedResponse, ProviderError> {
    let wire: WireEmbedResponse = transport::from_json(body)?;
    Ok(EmbedResponse {
        model: wire.model,
        embeddings: wire.embeddings,
        usage: Usage {
            input_tokens: wire.prompt_eval_count,
            ..Usage::default()
        },
    })
}

/// The model names of an `/api/tags` answer.
pub fn parse_tags_response(body: &[u8]) -> Result<Vec<String>, ProviderError> {
    let wire: WireTags = transport::from_json(body)?;
    Ok(wire.models.into_iter().map(|m| m.name).collect())
}

/// Classifies an error answer (`{"error":"..."}`).
pub fn map_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<WireError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| transport::excerpt(body));
    error_class::by_status(
        status.as_u16(),
        message,
        super::retry_after::from_headers(headers),
    )
}

/// Decodes the NDJSON chat stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    done: bool,
}

impl ChunkDecoder for StreamDecoder {
    type Frame = Bytes;

    fn on_frame(&mut self, line: Bytes, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let line: WireChatLine = transport::from_json(&line)?;
        if let Some(error) = line.error {
            return Err(ProviderError::Upstream {
                status: 200,
                message: error,
            });
        }
        if let Some(message) = &line.message
            && !message.content.is_empty()
        {
            out.push(ChatChunk::Delta {
                text: message.content.clone(),
            });
        }
        if line.done {
            self.done = true;
            out.push(ChatChunk::Done {
                finish_reason: finish_reason(line.done_reason.as_deref()),
                usage: usage(&line),
            });
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn on_eof(&mut self, _: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        Err(ProviderError::Transport {
            message: "the stream ended before done:true".to_owned(),
        })
    }
}

// ---- client -----------------------------------------------------------

impl Ollama {
    /// A client for the server at `base_url`.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        locality: Locality,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            locality,
            http,
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the server runs.
    pub fn locality(&self) -> Locality {
        self.locality
    }

    /// A complete chat.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let request = build_chat_request(&self.name, &self.base_url, req, false)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_chat_response(&transport::success_body(response, map_error)?)
    }

    /// A streamed chat.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let request = build_chat_request(&self.name, &self.base_url, req, true)?;
        let response = transport::open_stream(&self.http, request, cx.deadline, map_error).await?;
        Ok(stream::drive(
            stream::ndjson_frames(stream::response_bytes(response)),
            StreamDecoder::default(),
            cx.deadline,
            STREAM_IDLE_TIMEOUT,
        ))
    }

    /// Embeddings through `/api/embed`.
    pub async fn embed(
        &self,
        req: &EmbedRequest,
        cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        let request = build_embed_request(&self.name, &self.base_url, req)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_embed_response(&transport::success_body(response, map_error)?)
    }

    /// The models the server has (`/api/tags`); doubles as a health check.
    pub async fn list_models(&self, cx: &CallScope<'_>) -> Result<Vec<String>, ProviderError> {
        let request = build_tags_request(&self.name, &self.base_url)?;
        let response = transport::exchange(&self.http, request, cx.deadline).await?;
        parse_tags_response(&transport::success_body(response, map_error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Message;
    use super::super::stream::testing::*;
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/ollama/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "llama3.2".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "Be brief.".into(),
                },
                Message::user("why is the sky blue?"),
            ],
            max_tokens: Some(64),
            temperature: Some(0.5),
            stop: vec![],
            options: Default::default(),
            logprobs: false,
        }
    }

    #[test]
    fn builds_the_chat_request() {
        let r = build_chat_request("ollama", "http://o:11434/", &request(), false).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "http://o:11434/api/chat");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model":"llama3.2","stream":false,
                "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"why is the sky blue?"}],
                "options":{"temperature":0.5,"num_predict":64}})
        );
        let mut req = request();
        req.options = crate::GenerationOptions {
            top_p: Some(0.5),
            seed: Some(42),
            presence_penalty: Some(0.25),
            frequency_penalty: Some(-0.5),
            user: Some("u-1".into()),
        };
        let r = build_chat_request("ollama", "http://o:11434/", &req, false).unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body["options"],
            serde_json::json!({"temperature":0.5,"num_predict":64,"top_p":0.5,"seed":42,
                "presence_penalty":0.25,"frequency_penalty":-0.5})
        );
    }

    #[test]
    fn parses_a_complete_answer() {
        let r = parse_chat_response(&fixture("chat-ok.json")).unwrap();
        assert_eq!(r.text, "Hello! How are you today?");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.model, "llama3.2");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 26,
                output_tokens: 298,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn omitted_counts_default_to_zero() {
        let r = parse_chat_response(
            br#"{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"done_reason":"length","eval_count":3}"#,
        )
        .unwrap();
        assert_eq!(r.usage.input_tokens, 0);
        assert_eq!(r.usage.output_tokens, 3);
        assert_eq!(r.finish_reason, FinishReason::Length);
    }

    #[test]
    fn errors_are_classified() {
        let h = HeaderMap::new();
        let e = map_error(
            StatusCode::NOT_FOUND,
            &h,
            br#"{"error":"model 'x' not found"}"#,
        );
        assert_eq!(
            e,
            ProviderError::BadRequest {
                message: "model 'x' not found".into()
            }
        );
        let e = map_error(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"error":"the input length exceeds the context length"}"#,
        );
        assert!(matches!(e, ProviderError::ContextTooLong { .. }));
        let e = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":"slow down"}"#,
        );
        assert!(matches!(e, ProviderError::RateLimited { .. }));
        let e = map_error(StatusCode::INTERNAL_SERVER_ERROR, &h, b"runner failed");
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: 500,
                message: "runner failed".into()
            }
        );
        let e = map_error(StatusCode::BAD_GATEWAY, &h, br#"{"error":"unreachable"}"#);
        assert!(
            matches!(e, ProviderError::Upstream { status: 502, .. }),
            "{e:?}"
        );
    }

    fn run(chunks: Vec<Vec<u8>>) -> Outcome {
        collect(|| {
            stream::drive(
                stream::ndjson_frames(bytes_of(chunks)),
                StreamDecoder::default(),
                far(),
                STREAM_IDLE_TIMEOUT,
            )
        })
    }

    #[test]
    fn streams_text_and_final_usage() {
        let out = run(vec![fixture("chat-stream.ndjson")]);
        assert_eq!(out.text, "The sky is blue.");
        assert_eq!(
            out.done,
            Some((
                FinishReason::Stop,
                Usage {
                    input_tokens: 26,
                    output_tokens: 282,
                    ..Usage::default()
                }
            ))
        );
        assert_eq!(out.error, None);
    }

    #[test]
    fn a_mid_stream_error_line_is_an_error() {
        let out = run(vec![fixture("chat-stream-error.ndjson")]);
        assert_eq!(out.text, "The");
        assert_eq!(
            out.error,
            Some(ProviderError::Upstream {
                status: 200,
                message: "an error was encountered while running the model".into()
            })
        );
    }

    #[test]
    fn a_cut_stream_is_a_transport_error() {
        let data = fixture("chat-stream.ndjson");
        let cut = data.len() - 40;
        let out = run(vec![data[..cut].to_vec()]);
        assert!(out.done.is_none());
        assert!(out.error.is_some());
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_text_and_usage(cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let data = fixture("chat-stream.ndjson");
            let whole = run(vec![data.clone()]);
            let split = run(split_at(&data, &cuts));
            prop_assert_eq!(split, whole);
        }
    }

    #[test]
    fn parses_embeddings_and_tags() {
        let e = parse_embed_response(&fixture("embed-ok.json")).unwrap();
        assert_eq!(e.embeddings.len(), 2);
        assert_eq!(e.usage.input_tokens, 8);
        let r = build_embed_request(
            "ollama",
            "http://o",
            &EmbedRequest {
                model: "all-minilm".into(),
                inputs: vec!["a".into()],
            },
        )
        .unwrap();
        assert_eq!(r.uri(), "http://o/api/embed");
        let tags = parse_tags_response(&fixture("tags-ok.json")).unwrap();
        assert_eq!(tags, ["llama3:latest"]);
    }
}
