//! Strict parsing of OpenAI request bodies, as OpenAI itself parses them:
//! every field is mapped to the router's request (and on to the provider),
//! or refused with a 400 naming it. An OpenAI parameter the router does not
//! serve is `unsupported_parameter`; any other field, a misspelt `private`
//! included, is `unknown_parameter`, never ignored.
//!
//! Routing hints ride in the body (`task`, `max_latency_ms`, `private`,
//! `max_cost_usd`, `quality`, `tenant`, `difficulty`) or in `X-Route-*`
//! headers; the body wins.

use http::HeaderMap;
use routing_core::api::{InvalidRequest, RouteRequest};
use routing_core::chat::{GenerationOptions, Message, Role};
use routing_core::{Difficulty, Task};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The model name that asks the router to choose.
pub(crate) const AUTO_MODEL: &str = "auto";

/// A field the OpenAI surface refuses, with OpenAI's error `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ParamError {
    /// The field at fault, e.g. `tools` or `messages[0].name`.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
    /// `unknown_parameter`, `unsupported_parameter`, `unsupported_value`,
    /// `invalid_type`, `invalid_value` or `missing_required_parameter`.
    pub code: &'static str,
}

impl ParamError {
    fn new(param: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            message: message.into(),
            code,
        }
    }

    pub(crate) fn unknown(param: &str, known: &[&str]) -> Self {
        let hint = suggestion(param, known)
            .map(|s| format!(" Did you mean '{s}'?"))
            .unwrap_or_default();
        Self::new(
            param,
            "unknown_parameter",
            format!("Unknown parameter: '{param}'.{hint}"),
        )
    }

    fn unsupported(param: &str, why: &str) -> Self {
        Self::new(
            param,
            "unsupported_parameter",
            format!("Unsupported parameter: '{param}' {why}."),
        )
    }
}

impl From<InvalidRequest> for ParamError {
    /// A value the router's own checks refused.
    fn from(e: InvalidRequest) -> Self {
        let code = if e.param.is_some() {
            "invalid_value"
        } else {
            "invalid_request"
        };
        Self {
            param: e.param,
            message: e.message,
            code,
        }
    }
}

/// The known field `param` was most likely meant as: the same letters in
/// another case or with `is_` dropped, or any field about privacy for one
/// that mentions it (a misspelt `private` must never pass silently).
fn suggestion<'a>(param: &str, known: &[&'a str]) -> Option<&'a str> {
    let plain = param.to_ascii_lowercase().replace(['-', ' '], "_");
    let plain = plain.strip_prefix("is_").unwrap_or(&plain);
    known.iter().copied().find(|k| *k == plain).or_else(|| {
        plain
            .contains("priva")
            .then_some("private")
            .filter(|p| known.contains(p))
    })
}

/// OpenAI's limit on stop sequences (every provider takes at least as many).
const MAX_STOP_SEQUENCES: usize = 4;

/// Routing hints every OpenAI endpoint takes in the body.
const HINT_FIELDS: [&str; 7] = [
    "task",
    "max_latency_ms",
    "private",
    "max_cost_usd",
    "quality",
    "tenant",
    "difficulty",
];

/// OpenAI's own chat completion fields the router maps.
const CHAT_FIELDS: [&str; 18] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "safety_identifier",
    "logprobs",
    "tools",
    "response_format",
];

/// OpenAI chat completion parameters the router does not serve, and why.
const CHAT_UNSUPPORTED: [(&str, &str); 15] = [
    (
        "tool_choice",
        "needs tools, which the router does not support",
    ),
    (
        "parallel_tool_calls",
        "needs tools, which the router does not support",
    ),
    ("functions", "(legacy function calling) is not supported"),
    (
        "function_call",
        "(legacy function calling) is not supported",
    ),
    (
        "top_logprobs",
        "is not supported: logprobs are not returned",
    ),
    ("logit_bias", "is not supported"),
    ("reasoning_effort", "is not supported yet"),
    ("verbosity", "is not supported"),
    ("metadata", "is not supported: completions are not stored"),
    ("store", "is not supported: completions are not stored"),
    (
        "modalities",
        "is not supported: the router answers text only",
    ),
    ("audio", "is not supported: the router answers text only"),
    ("prediction", "is not supported"),
    ("service_tier", "is not supported"),
    ("web_search_options", "is not supported"),
];

/// Fields of one chat message the router maps (`refusal` and
/// `annotations` are what a previous answer's message carries back).
const MESSAGE_FIELDS: [&str; 4] = ["role", "content", "refusal", "annotations"];

/// Message fields the router does not serve (accepted when `null` or empty).
const MESSAGE_UNSUPPORTED: [(&str, &str); 5] = [
    ("name", "(participant names) is not supported"),
    (
        "tool_calls",
        "needs tools, which the router does not support",
    ),
    (
        "tool_call_id",
        "needs tools, which the router does not support",
    ),
    (
        "function_call",
        "(legacy function calling) is not supported",
    ),
    ("audio", "is not supported: the router answers text only"),
];

/// `stream_options` fields (obfuscation pads chunks against a side channel
/// of OpenAI's own; the router's chunks carry no padding to turn off).
const STREAM_OPTION_FIELDS: [&str; 2] = ["include_usage", "include_obfuscation"];

/// OpenAI's own embeddings fields the router maps (`user` is taken and not
/// passed on: embeddings are computed in the cluster, no provider sees it).
const EMBEDDINGS_FIELDS: [&str; 4] = ["model", "input", "encoding_format", "user"];

/// OpenAI embeddings parameters the router does not serve.
const EMBEDDINGS_UNSUPPORTED: [(&str, &str); 1] = [(
    "dimensions",
    "is not supported: each embedding model has one size",
)];

/// Routing hints that do not apply to embeddings.
const EMBEDDINGS_NOT_HINTS: [(&str, &str); 2] = [
    (
        "quality",
        "does not apply to embeddings (one model computes them)",
    ),
    (
        "difficulty",
        "does not apply to embeddings (one model computes them)",
    ),
];

/// Whether a value asks for nothing: `null`, `false`, `[]` or `{}`.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Parses a JSON object body, refusing non-objects and broken JSON.
fn object(body: &[u8]) -> Result<Map<String, Value>, ParamError> {
    routing_core::api::parse_json::<Map<String, Value>>(body).map_err(|e| ParamError {
        param: None,
        message: e.message,
        code: "invalid_json",
    })
}

/// Deserializes `value` as `T`, naming the field at fault under `prefix`.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ParamError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = if path == "." || path.is_empty() {
            message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        } else {
            Some(path)
        };
        let param = match (prefix, field) {
            ("", field) => field,
            (prefix, Some(field)) => Some(format!("{prefix}.{field}")),
            (prefix, None) => Some(prefix.to_owned()),
        };
        let code = if message.starts_with("missing field") {
            "missing_required_parameter"
        } else if message.starts_with("invalid type") {
            "invalid_type"
        } else {
            "invalid_value"
        };
        ParamError {
            param,
            message,
            code,
        }
    })
}

/// Moves the routing hints out of `body`.
fn take_hints(body: &mut Map<String, Value>) -> Map<String, Value> {
    HINT_FIELDS
        .iter()
        .filter_map(|k| body.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// Refuses every field of `body` that is neither known nor (when set)
/// allowed; `prefix` names where `body` sits (`messages[0]`).
fn check_fields(
    body: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
    unsupported: &[(&str, &str)],
) -> Result<(), ParamError> {
    let name = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    for (key, value) in body {
        if known.contains(&key.as_str()) {
            continue;
        }
        if let Some((_, why)) = unsupported.iter().find(|(k, _)| k == key) {
            if is_unset(value) {
                continue;
            }
            return Err(ParamError::unsupported(&name(key), why));
        }
        return Err(ParamError::unknown(&name(key), known));
    }
    Ok(())
}

/// Routing hints, from the body or `X-Route-*` headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The caller's own judgement of difficulty.
    #[serde(default)]
    pub difficulty: Option<Difficulty>,
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
            difficulty: self.difficulty,
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
#[serde(deny_unknown_fields)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// Accepted (type-checked); the router's chunks are never padded.
    #[serde(default, rename = "include_obfuscation")]
    _include_obfuscation: Option<bool>,
}

/// `response_format`: only `text`, the default, is served.
#[derive(Debug, Deserialize)]
pub(crate) struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A chat message as OpenAI clients send it (its fields checked first).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// Text, or an array of content parts.
    #[serde(default)]
    pub content: Option<Value>,
}

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
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// One stop sequence or several.
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    #[serde(default)]
    pub n: Option<u32>,
    /// Best-effort deterministic sampling.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// The caller's end user.
    #[serde(default)]
    pub user: Option<String>,
    /// The caller's end user (OpenAI's newer name for `user`).
    #[serde(default)]
    pub safety_identifier: Option<String>,
    /// Log probabilities; only `false` is served.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Tools; only none is served.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// Only `{"type": "text"}` is served.
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// Routing hints.
    #[serde(skip)]
    pub hints: Hints,
}

impl ChatCompletionRequest {
    /// Parses a body strictly: an unknown or unsupported field is an error
    /// naming it, before any routing.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ParamError> {
        let mut body = object(body)?;
        let hints = take_hints(&mut body);
        check_fields(&body, "", &all_known(&CHAT_FIELDS), &CHAT_UNSUPPORTED)?;
        if let Some(Value::Array(messages)) = body.get("messages") {
            for (i, message) in messages.iter().enumerate() {
                if let Value::Object(fields) = message {
                    check_fields(
                        fields,
                        &format!("messages[{i}]"),
                        &MESSAGE_FIELDS,
                        &MESSAGE_UNSUPPORTED,
                    )?;
                    check_message_values(fields, i)?;
                }
            }
        }
        if let Some(Value::Object(options)) = body.get("stream_options") {
            check_fields(options, "stream_options", &STREAM_OPTION_FIELDS, &[])?;
        }
        let mut request: Self = typed(Value::Object(body), "")?;
        request.hints = typed(Value::Object(hints), "")?;
        request.check_values()?;
        Ok(request)
    }

    /// The values OpenAI accepts that the router cannot serve.
    fn check_values(&self) -> Result<(), ParamError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ParamError::new(
                "n",
                "unsupported_value",
                "Unsupported value: 'n' must be 1; the router returns one choice.",
            ));
        }
        if self.logprobs == Some(true) {
            return Err(ParamError::unsupported(
                "logprobs",
                "is not supported: logprobs are not returned",
            ));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ParamError::unsupported(
                "tools",
                "is not supported: the router does not call tools",
            ));
        }
        if let Some(format) = self.response_format.as_ref().filter(|f| f.kind != "text") {
            return Err(ParamError::new(
                "response_format",
                "unsupported_value",
                format!(
                    "Unsupported value: 'response_format' of type '{}' is not supported; only 'text' is.",
                    format.kind
                ),
            ));
        }
        if let Some(OneOrMany::Many(stops)) = &self.stop
            && stops.len() > MAX_STOP_SEQUENCES
        {
            return Err(ParamError::new(
                "stop",
                "invalid_value",
                format!("at most {MAX_STOP_SEQUENCES} stop sequences"),
            ));
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(ParamError::new(
                "stream_options",
                "invalid_value",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        Ok(())
    }

    /// Whether the final chunk should carry usage.
    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The router request this chat completion asks for (not yet validated).
    pub(crate) fn into_route_request(self) -> Result<RouteRequest, ParamError> {
        let messages = self.fleet_messages()?;
        Ok(RouteRequest {
            messages: Some(messages),
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            stop: self.stop.map(OneOrMany::into_vec).unwrap_or_default(),
            model: Some(self.model).filter(|m| m != AUTO_MODEL),
            stream: self.stream.unwrap_or(false),
            options: GenerationOptions {
                top_p: self.top_p,
                seed: self.seed,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                user: self.safety_identifier.or(self.user),
            },
            ..self.hints.into_route_request()
        })
    }

    /// The conversation in the fleet's form.
    pub(crate) fn fleet_messages(&self) -> Result<Vec<Message>, ParamError> {
        if self.messages.is_empty() {
            return Err(ParamError::new(
                "messages",
                "empty_array",
                "messages must not be empty",
            ));
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
                        return Err(ParamError::new(
                            &format!("messages[{i}].role"),
                            "unsupported_value",
                            format!("role {other:?} is not supported"),
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
                                _ => Err(ParamError::new(
                                    &format!("messages[{i}].content"),
                                    "unsupported_value",
                                    "only text content parts are supported",
                                )),
                            },
                        )
                        .collect::<Result<Vec<_>, _>>()?
                        .join("\n"),
                    _ => {
                        return Err(ParamError::new(
                            &format!("messages[{i}].content"),
                            "invalid_type",
                            "content must be text",
                        ));
                    }
                };
                Ok(Message { role, content })
            })
            .collect()
    }
}

/// A message's `refusal` must be unset (a refused turn carries no text to
/// send back).
fn check_message_values(fields: &Map<String, Value>, i: usize) -> Result<(), ParamError> {
    match fields.get("refusal") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ParamError::unsupported(
            &format!("messages[{i}].refusal"),
            "is not supported: send the refused turn's content instead",
        )),
    }
}

/// OpenAI's fields, the hints and the unsupported names together: every
/// name a caller could have meant, for suggestions.
fn all_known(fields: &[&'static str]) -> Vec<&'static str> {
    fields.iter().chain(HINT_FIELDS.iter()).copied().collect()
}

/// The `input` of an embeddings request: text, or token ids as OpenAI's
/// clients send them (LangChain's `OpenAIEmbeddings()` does by default).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One text as cl100k_base token ids.
    Tokens(Vec<u32>),
    /// Several texts as cl100k_base token ids.
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The texts; token ids are decoded with cl100k_base, the encoding of
    /// OpenAI's embedding models, which is what clients encode with.
    pub(crate) fn into_texts(self) -> Result<Vec<String>, ParamError> {
        match self {
            EmbeddingInput::Text(text) => Ok(vec![text]),
            EmbeddingInput::Texts(texts) => Ok(texts),
            EmbeddingInput::Tokens(tokens) => Ok(vec![decode(&tokens, "input")?]),
            EmbeddingInput::TokenLists(lists) => lists
                .iter()
                .enumerate()
                .map(|(i, tokens)| decode(tokens, &format!("input[{i}]")))
                .collect(),
        }
    }
}

/// cl100k_base token ids back to their text.
fn decode(tokens: &[u32], param: &str) -> Result<String, ParamError> {
    if tokens.is_empty() {
        return Err(ParamError::new(
            param,
            "invalid_value",
            "token arrays must not be empty",
        ));
    }
    tiktoken_rs::cl100k_base_singleton()
        .decode(tokens)
        .map_err(|e| {
            ParamError::new(
                param,
                "invalid_value",
                format!("not cl100k_base tokens of UTF-8 text: {e}"),
            )
        })
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    /// `auto` or an embedding model id.
    #[serde(default)]
    pub model: Option<String>,
    /// Texts or token ids.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// The caller's end user (embeddings stay in the cluster: no provider
    /// sees it).
    #[serde(default)]
    pub user: Option<String>,
    /// Routing hints.
    #[serde(skip)]
    pub hints: Hints,
}

impl EmbeddingsRequest {
    /// Parses a body strictly (see [`ChatCompletionRequest::parse`]).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ParamError> {
        let mut body = object(body)?;
        let hints = take_hints(&mut body);
        for (hint, why) in EMBEDDINGS_NOT_HINTS {
            if hints.get(hint).is_some_and(|v| !v.is_null()) {
                return Err(ParamError::unsupported(hint, why));
            }
        }
        if let Some(task) = hints
            .get("task")
            .filter(|t| !t.is_null() && t.as_str() != Some("embed"))
        {
            return Err(ParamError::new(
                "task",
                "invalid_value",
                format!("task must be embed on /v1/embeddings, not {task}"),
            ));
        }
        check_fields(
            &body,
            "",
            &all_known(&EMBEDDINGS_FIELDS),
            &EMBEDDINGS_UNSUPPORTED,
        )?;
        let mut request: Self = typed(Value::Object(body), "")?;
        request.hints = typed(Value::Object(hints), "")?;
        match request.encoding_format.as_deref() {
            None | Some("float" | "base64") => Ok(request),
            Some(_) => Err(ParamError::new(
                "encoding_format",
                "invalid_value",
                "encoding_format must be float or base64",
            )),
        }
    }

    /// Whether vectors are answered in base64.
    pub(crate) fn base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }

    /// The router request (task `embed`) this asks for, not yet validated.
    pub(crate) fn into_route_request(self) -> Result<RouteRequest, ParamError> {
        Ok(RouteRequest {
            task: Some(Task::Embed),
            input: Some(self.input.into_texts()?),
            model: self.model.filter(|m| m != AUTO_MODEL),
            options: GenerationOptions {
                user: self.user,
                ..GenerationOptions::default()
            },
            ..self.hints.into_route_request()
        })
    }
}

#[cfg(test)]
#[path = "openai_request_tests.rs"]
mod tests;
