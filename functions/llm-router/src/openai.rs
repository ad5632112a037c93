//! The OpenAI-compatible surface: `POST /v1/chat/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`. Routing hints ride in the body
//! (`"model": "auto"` routes, a catalogue id pins; `task`, `max_latency_ms`,
//! `private`, `max_cost_usd`, `quality`, `tenant` as extra fields) or in
//! `X-Route-*` headers; the body wins.

use http::HeaderMap;
use routing_core::Task;
use routing_core::api::{InvalidRequest, RouteRequest, RouteResponse};
use routing_core::chat::{FinishReason, Message, Role, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The model name that asks the router to choose.
pub(crate) const AUTO_MODEL: &str = "auto";

/// `POST /v1/chat/completions` as OpenAI clients send it, plus routing hints.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletionRequest {
    /// `auto`, or a catalogue model id to pin.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens (older name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Upper bound on generated tokens (current name).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// One stop sequence or several.
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    #[serde(default)]
    pub n: Option<u32>,
    /// Tools are not supported by the router.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// Routing hints.
    #[serde(flatten)]
    pub hints: Hints,
}

/// Routing hints, from the body or `X-Route-*` headers.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Hints {
    /// The task.
    #[serde(default)]
    pub task: Option<Task>,
    /// End-to-end latency budget.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// Keep the request in the cluster.
    #[serde(default)]
    pub private: Option<bool>,
    /// Most the caller will pay for this request.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Quality floor in `[0, 1]`.
    #[serde(default)]
    pub quality: Option<f32>,
    /// Tenant or workflow tag.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl Hints {
    /// A router request carrying these hints and nothing else; the OpenAI
    /// request it rode in fills the rest.
    fn into_route_request(self) -> RouteRequest {
        RouteRequest {
            task: self.task,
            max_latency_ms: self.max_latency_ms,
            private: self.private.unwrap_or(false),
            tenant: self.tenant,
            max_cost_usd: self.max_cost_usd,
            quality: self.quality,
            ..RouteRequest::default()
        }
    }

    /// Fills what the body left out from `X-Route-*` headers.
    pub(crate) fn merge_headers(&mut self, headers: &HeaderMap) -> Result<(), InvalidRequest> {
        fn header<T: std::str::FromStr>(
            headers: &HeaderMap,
            name: &str,
        ) -> Result<Option<T>, InvalidRequest> {
            let Some(value) = headers.get(name) else {
                return Ok(None);
            };
            let text = value.to_str().ok().map(str::trim);
            text.and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| InvalidRequest {
                    param: Some(name.to_owned()),
                    message: format!("header {name} has an invalid value"),
                })
        }
        if self.task.is_none() {
            self.task = header(headers, "x-route-task")?;
        }
        if self.max_latency_ms.is_none() {
            self.max_latency_ms = header(headers, "x-route-max-latency-ms")?;
        }
        if self.private.is_none() {
            self.private = header(headers, "x-route-private")?;
        }
        if self.max_cost_usd.is_none() {
            self.max_cost_usd = header(headers, "x-route-max-cost-usd")?;
        }
        if self.quality.is_none() {
            self.quality = header(headers, "x-route-quality")?;
        }
        if self.tenant.is_none() {
            self.tenant = header(headers, "x-route-tenant")?;
        }
        Ok(())
    }
}

/// A string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// As a list.
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// A chat message as OpenAI clients send it.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or an array of content parts.
    #[serde(default)]
    pub content: Option<Value>,
}

impl ChatCompletionRequest {
    /// The router request this chat completion asks for (not yet validated).
    pub(crate) fn into_route_request(self) -> Result<RouteRequest, InvalidRequest> {
        let messages = self.fleet_messages()?;
        Ok(RouteRequest {
            messages: Some(messages),
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            stop: self.stop.map(OneOrMany::into_vec).unwrap_or_default(),
            model: Some(self.model).filter(|m| m != AUTO_MODEL),
            stream: self.stream,
            ..self.hints.into_route_request()
        })
    }

    /// The conversation in the fleet's form.
    pub(crate) fn fleet_messages(&self) -> Result<Vec<Message>, InvalidRequest> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("n", "only n = 1 is supported"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid(
                "tools",
                "tool calls are not supported by the router",
            ));
        }
        if self.messages.is_empty() {
            return Err(invalid("messages", "messages must not be empty"));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "system" | "developer" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => {
                        return Err(invalid(
                            &format!("messages[{i}].role"),
                            &format!("role {other:?} is not supported"),
                        ));
                    }
                };
                let content = match &m.content {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .map(
                            |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                                (Some("text"), Some(Value::String(t))) => Ok(t.as_str()),
                                _ => Err(invalid(
                                    &format!("messages[{i}].content"),
                                    "only text content parts are supported",
                                )),
                            },
                        )
                        .collect::<Result<Vec<_>, _>>()?
                        .join("\n"),
                    _ => {
                        return Err(invalid(
                            &format!("messages[{i}].content"),
                            "content must be text",
                        ));
                    }
                };
                Ok(Message { role, content })
            })
            .collect()
    }
}

fn invalid(param: &str, message: &str) -> InvalidRequest {
    InvalidRequest {
        param: Some(param.to_owned()),
        message: message.to_owned(),
    }
}

/// OpenAI's `usage` object.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct OpenAiUsage {
    /// Prompt tokens, cached included.
    pub prompt_tokens: u64,
    /// Generated tokens, reasoning included.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
    /// Cached prompt tokens.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Reasoning tokens.
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct CompletionTokensDetails {
    /// Hidden reasoning tokens.
    pub reasoning_tokens: u64,
}

impl From<&Usage> for OpenAiUsage {
    fn from(u: &Usage) -> Self {
        OpenAiUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_input_tokens,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
        }
    }
}

/// OpenAI's `finish_reason` for ours.
pub(crate) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter | FinishReason::Refusal => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// The non-streamed answer.
pub(crate) fn completion(answer: &RouteResponse, created: u64, extension: Value) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{}", answer.id),
        "object": "chat.completion",
        "created": created,
        "model": catalogue_id(&answer.provider, &answer.model),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.output.clone().unwrap_or_default(), "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(answer.finish_reason.unwrap_or(FinishReason::Stop)),
        }],
        "usage": OpenAiUsage::from(&answer.usage),
        "x_route": extension,
    })
}

/// One streamed chunk (`chat.completion.chunk`).
pub(crate) fn chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: Value,
    finish: Option<&str>,
) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "usage": null,
    })
}

/// The usage chunk sent before `[DONE]` when `include_usage` is set.
pub(crate) fn usage_chunk(
    id: &str,
    created: u64,
    model: &str,
    usage: &Usage,
    extension: Value,
) -> Value {
    serde_json::json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": OpenAiUsage::from(usage),
        "x_route": extension,
    })
}

/// `provider/model`, the id the catalogue and `/v1/models` use.
pub(crate) fn catalogue_id(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    /// `auto` or an embedding model id.
    #[serde(default)]
    pub model: Option<String>,
    /// A string or an array of strings.
    pub input: OneOrMany,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Routing hints.
    #[serde(flatten)]
    pub hints: Hints,
}

impl EmbeddingsRequest {
    /// The router request (task `embed`) this asks for, not yet validated.
    /// The `task` and `quality` hints do not apply to embeddings.
    pub(crate) fn into_route_request(self) -> RouteRequest {
        RouteRequest {
            task: Some(Task::Embed),
            input: Some(self.input.into_vec()),
            quality: None,
            model: self.model.filter(|m| m != AUTO_MODEL),
            ..self.hints.into_route_request()
        }
    }
}

/// The embeddings answer in OpenAI's shape; with `base64`, each vector is
/// its little-endian `f32` bytes in base64, as OpenAI encodes them.
pub(crate) fn embeddings(answer: &RouteResponse, base64: bool, extension: Value) -> Value {
    use base64::Engine as _;
    let data: Vec<Value> = answer
        .embeddings
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    serde_json::json!({
        "object": "list",
        "data": data,
        "model": answer.model,
        "usage": {"prompt_tokens": answer.usage.input_tokens, "total_tokens": answer.usage.input_tokens},
        "x_route": extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_messages_become_fleet_messages() {
        let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": "auto",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "max_latency_ms": 250, "private": true, "presence_penalty": 0.1
        }))
        .unwrap();
        let messages = req.fleet_messages().unwrap();
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[1].content, "a\nb");
        assert_eq!(req.hints.max_latency_ms, Some(250));
        assert_eq!(req.hints.private, Some(true));
    }

    #[test]
    fn a_chat_completion_becomes_a_route_request() {
        let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": "groq/llama", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5, "stop": "END",
            "stream": true, "task": "reason", "max_latency_ms": 250, "private": true,
            "tenant": "t", "max_cost_usd": 0.1, "quality": 0.8
        }))
        .unwrap();
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
                stream: true,
                ..RouteRequest::default()
            }
        );
        let auto: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": "auto", "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap();
        assert_eq!(auto.into_route_request().unwrap().model, None);
    }

    #[test]
    fn an_embeddings_request_becomes_an_embed_route_request() {
        let req: EmbeddingsRequest = serde_json::from_value(serde_json::json!({
            "model": "auto", "input": ["a", "b"], "task": "generate", "quality": 0.9,
            "private": true, "tenant": "t"
        }))
        .unwrap();
        assert_eq!(
            req.into_route_request(),
            RouteRequest {
                task: Some(Task::Embed),
                input: Some(vec!["a".to_owned(), "b".to_owned()]),
                private: true,
                tenant: Some("t".to_owned()),
                ..RouteRequest::default()
            }
        );
    }

    #[test]
    fn unsupported_shapes_name_the_field() {
        for (body, field) in [
            (
                serde_json::json!({"model":"auto","messages":[{"role":"tool","content":"x"}]}),
                "messages[0].role",
            ),
            (
                serde_json::json!({"model":"auto","messages":[{"role":"user","content":"x"}],"n":2}),
                "n",
            ),
            (
                serde_json::json!({"model":"auto","messages":[{"role":"user","content":[{"type":"image_url"}]}]}),
                "messages[0].content",
            ),
            (
                serde_json::json!({"model":"auto","messages":[]}),
                "messages",
            ),
        ] {
            let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
            assert_eq!(
                req.fleet_messages().unwrap_err().param.as_deref(),
                Some(field)
            );
        }
    }

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        use base64::Engine as _;
        let answer: RouteResponse = serde_json::from_value(serde_json::json!({
            "id": "x", "task": "embed", "provider": "local", "model": "m",
            "embeddings": [[1.0, -0.5]], "usage": {"input_tokens": 1, "output_tokens": 0},
            "cost_usd": 0.0, "latency_ms": 1, "route": {"rule": "r", "reason": "r"}
        }))
        .unwrap();
        let body = embeddings(&answer, true, Value::Null);
        let text = body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![1.0, -0.5]);
        assert_eq!(
            embeddings(&answer, false, Value::Null)["data"][0]["embedding"][1],
            -0.5
        );
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
}
