//! The OpenAI chat-completions protocol and its dialects: OpenAI, Groq
//! (`x_groq`, 413/498, Go-style reset headers), OpenRouter (keep-alive
//! comments, in-stream `error`, 402), DeepSeek (keep-alive, cache usage
//! fields), Mistral (usage on the last content chunk), vLLM (its error
//! shape, `continuous_usage_stats`) and Ollama's `/v1` layer.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::clock::unix_secs;
use crate::credentials::Credentials;
use crate::exchange::{
    Call, EmuBody, Reply, cut_body, json as json_response, lock, malformed, set_header, streaming,
    with_body,
};
use crate::faults::Fault;
use crate::flavor::ProviderFlavor;
use crate::sampling::TokenLogprob;
use crate::text::{Conversation, Finish, content_text, embed, estimate_tokens};

const SSE_TYPE: &str = "text/event-stream; charset=utf-8";
const JSON_TYPE: &str = "application/json";

/// Groq's published limits, reported in its `x-ratelimit-*` headers.
const GROQ_RPD: u64 = 14_400;
const GROQ_TPM: u64 = 250_000;
/// OpenAI's headers' limits (a tier-3 organisation).
const OPENAI_RPM: u64 = 5_000;
const OPENAI_TPM: u64 = 4_000_000;

/// One provider error, before it is shaped into the flavor's body.
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after: None,
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// The routes of one dialect, relative to the host.
fn route(flavor: ProviderFlavor, path: &str) -> Option<&str> {
    let rest = match flavor {
        ProviderFlavor::Groq => path.strip_prefix("/openai/v1"),
        ProviderFlavor::OpenRouter => path.strip_prefix("/api/v1"),
        ProviderFlavor::DeepSeek => Some(path.strip_prefix("/v1").unwrap_or(path)),
        _ => path.strip_prefix("/v1"),
    }?;
    Some(rest)
}

pub(crate) async fn handle(call: &Call) -> Reply {
    let flavor = call.flavor();
    if flavor == ProviderFlavor::Vllm && call.method == Method::GET {
        match call.path.as_str() {
            "/health" => return with_body(StatusCode::OK, JSON_TYPE, Bytes::new()).into(),
            "/version" => {
                return json_response(StatusCode::OK, &json!({"version":"0.11.0"})).into();
            }
            _ => {}
        }
    }
    let Some(rest) = route(flavor, &call.path) else {
        return not_found_url(call);
    };
    if let Some(reply) = check_auth(call) {
        return reply;
    }
    match (&call.method, rest) {
        (&Method::POST, "/chat/completions") => chat(call).await,
        (&Method::POST, "/embeddings") if offers_embeddings(flavor) => embeddings(call).await,
        (&Method::GET, "/models") => models(call),
        (&Method::GET, m) if m.starts_with("/models/") => model(call, &m["/models/".len()..]),
        _ => not_found_url(call),
    }
}

fn offers_embeddings(flavor: ProviderFlavor) -> bool {
    !matches!(flavor, ProviderFlavor::Groq | ProviderFlavor::DeepSeek)
}

fn not_found_url(call: &Call) -> Reply {
    let flavor = call.flavor();
    let method = call.method.as_str();
    let path = &call.path;
    let err = match flavor {
        ProviderFlavor::Groq => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown request URL: {method} {path}. Please check the URL for typos, or see the docs at https://console.groq.com/docs/"),
        )
        .code("unknown_url"),
        ProviderFlavor::Vllm | ProviderFlavor::Ollama => {
            return with_body(StatusCode::NOT_FOUND, JSON_TYPE, r#"{"detail":"Not Found"}"#).into();
        }
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        ),
    };
    render_error(call, &err).into()
}

/// The key a client sent as `Authorization: Bearer`.
fn bearer(call: &Call) -> Option<&str> {
    call.header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Masks a key as OpenAI does in its 401 message.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn check_auth(call: &Call) -> Option<Reply> {
    let Credentials::ApiKey(expected) = call.shared.credentials() else {
        return None;
    };
    let sent = bearer(call);
    if sent == Some(expected.as_str()) {
        return None;
    }
    Some(auth_failure(call, sent))
}

/// Each dialect's 401 for a missing or wrong key.
fn auth_failure(call: &Call, sent: Option<&str>) -> Reply {
    let unauthorized = StatusCode::UNAUTHORIZED;
    let err = match (call.flavor(), sent) {
        (ProviderFlavor::OpenAi | ProviderFlavor::Ollama, None) => ApiError::new(
            unauthorized,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        ),
        (ProviderFlavor::OpenAi | ProviderFlavor::Ollama, Some(key)) => ApiError::new(
            unauthorized,
            "invalid_request_error",
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask(key)
            ),
        )
        .code("invalid_api_key"),
        (ProviderFlavor::Groq, _) => {
            ApiError::new(unauthorized, "invalid_request_error", "Invalid API Key")
                .code("invalid_api_key")
        }
        (ProviderFlavor::OpenRouter, None) => {
            ApiError::new(unauthorized, "", "No auth credentials found")
        }
        (ProviderFlavor::OpenRouter, Some(_)) => ApiError::new(unauthorized, "", "User not found."),
        (ProviderFlavor::DeepSeek, _) => ApiError::new(
            unauthorized,
            "authentication_error",
            "Authentication Fails, Your api key is invalid",
        )
        .code("invalid_request_error"),
        (ProviderFlavor::Mistral, _) => {
            let mut resp = json_response(
                unauthorized,
                &json!({"message": "Unauthorized", "request_id": call.hex_id(32)}),
            );
            common_headers(call, &mut resp, 0);
            return resp.into();
        }
        (ProviderFlavor::Vllm, _) => {
            return json_response(unauthorized, &json!({"error": "Unauthorized"})).into();
        }
        _ => ApiError::new(unauthorized, "invalid_request_error", "Invalid API key"),
    };
    render_error(call, &err).into()
}

/// Shapes an error as the flavor does and adds its headers.
fn render_error(call: &Call, err: &ApiError) -> Response<EmuBody> {
    let status = err.status.as_u16();
    let body = match call.flavor() {
        ProviderFlavor::Groq => {
            let mut e = Map::new();
            e.insert("message".into(), json!(err.message));
            e.insert("type".into(), json!(err.kind));
            if let Some(param) = err.param {
                e.insert("param".into(), json!(param));
            }
            if let Some(code) = err.code {
                e.insert("code".into(), json!(code));
            }
            json!({ "error": e })
        }
        ProviderFlavor::OpenRouter => {
            json!({"error": {"code": status, "message": err.message, "metadata": {}}})
        }
        ProviderFlavor::Mistral => json!({
            "object": "error",
            "message": err.message,
            "type": err.kind,
            "param": err.param,
            "code": err.code.map_or_else(|| status.to_string(), str::to_owned),
        }),
        ProviderFlavor::Vllm => json!({
            "error": {"message": err.message, "type": err.kind, "param": err.param, "code": status}
        }),
        _ => json!({
            "error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code}
        }),
    };
    let mut resp = json_response(err.status, &body);
    common_headers(call, &mut resp, 0);
    if let Some(secs) = err.retry_after {
        set_header(&mut resp, "retry-after", &secs.to_string());
    }
    resp
}

/// Go's `time.Duration` string, as Groq's and OpenAI's reset headers use:
/// `12ms`, `7.66s`, `2m59.56s`, `1h0m0s`.
pub(crate) fn go_duration(secs: f64) -> String {
    if !secs.is_finite() || secs <= 0.0 {
        return "0s".to_owned();
    }
    if secs < 1.0 {
        let ms = (secs * 1000.0 * 100.0).round() / 100.0;
        return format!("{}ms", trim_float(ms));
    }
    let total_centis = (secs * 100.0).round() as u64;
    let hours = total_centis / 360_000;
    let minutes = (total_centis / 6000) % 60;
    let centis = total_centis % 6000;
    let seconds = trim_float(centis as f64 / 100.0);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Rate-limit and request-id headers every response of the flavor carries.
fn common_headers(call: &Call, resp: &mut Response<EmuBody>, tokens: u64) {
    let flavor = call.flavor();
    let used_requests = call.seq;
    let used_tokens = {
        let mut memory = lock(&call.shared.memory);
        let minute = unix_secs() / 60;
        if memory.token_window.0 != minute {
            memory.token_window = (minute, 0);
        }
        memory.token_window.1 += tokens;
        memory.token_window.1
    };
    match flavor {
        ProviderFlavor::OpenAi => {
            set_header(resp, "x-request-id", &format!("req_{}", call.hex_id(32)));
            set_header(resp, "openai-organization", "org-emulator");
            set_header(resp, "openai-processing-ms", "12");
            set_header(resp, "openai-version", "2020-10-01");
            let rem_req = OPENAI_RPM.saturating_sub(used_requests);
            let rem_tok = OPENAI_TPM.saturating_sub(used_tokens);
            set_header(resp, "x-ratelimit-limit-requests", &OPENAI_RPM.to_string());
            set_header(resp, "x-ratelimit-limit-tokens", &OPENAI_TPM.to_string());
            set_header(resp, "x-ratelimit-remaining-requests", &rem_req.to_string());
            set_header(resp, "x-ratelimit-remaining-tokens", &rem_tok.to_string());
            let reset_req = (OPENAI_RPM - rem_req) as f64 * 60.0 / OPENAI_RPM as f64;
            let reset_tok = (OPENAI_TPM - rem_tok) as f64 * 60.0 / OPENAI_TPM as f64;
            set_header(resp, "x-ratelimit-reset-requests", &go_duration(reset_req));
            set_header(resp, "x-ratelimit-reset-tokens", &go_duration(reset_tok));
        }
        ProviderFlavor::Groq => {
            set_header(
                resp,
                "x-request-id",
                &format!("req_01{}", call.id(24).to_lowercase()),
            );
            let rem_req = GROQ_RPD.saturating_sub(used_requests);
            let rem_tok = GROQ_TPM.saturating_sub(used_tokens);
            set_header(resp, "x-ratelimit-limit-requests", &GROQ_RPD.to_string());
            set_header(resp, "x-ratelimit-limit-tokens", &GROQ_TPM.to_string());
            set_header(resp, "x-ratelimit-remaining-requests", &rem_req.to_string());
            set_header(resp, "x-ratelimit-remaining-tokens", &rem_tok.to_string());
            // Limits refill continuously: a day for requests, a minute for tokens.
            let reset_req = (GROQ_RPD - rem_req) as f64 * 86_400.0 / GROQ_RPD as f64;
            let reset_tok = (GROQ_TPM - rem_tok) as f64 * 60.0 / GROQ_TPM as f64;
            set_header(resp, "x-ratelimit-reset-requests", &go_duration(reset_req));
            set_header(resp, "x-ratelimit-reset-tokens", &go_duration(reset_tok));
        }
        ProviderFlavor::OpenRouter => {
            set_header(
                resp,
                "x-generation-id",
                &format!("gen-{}-{}", unix_secs(), call.id(20)),
            );
        }
        ProviderFlavor::Mistral => {
            set_header(resp, "mistral-correlation-id", &call.hex_id(32));
            set_header(resp, "x-ratelimit-limit-tokens-minute", "2000000");
            set_header(
                resp,
                "x-ratelimit-remaining-tokens-minute",
                &2_000_000u64.saturating_sub(used_tokens).to_string(),
            );
        }
        ProviderFlavor::DeepSeek => {
            set_header(resp, "x-ds-trace-id", &call.hex_id(32));
        }
        _ => {}
    }
}

/// The fault rendered in the dialect; `None` for faults that alter a success.
fn fault_error(call: &Call, fault: Fault, model: &str, requested: u64) -> Option<Reply> {
    let flavor = call.flavor();
    let groq_like = flavor == ProviderFlavor::Groq;
    let err = match fault {
        Fault::Hang => return Some(Reply::Hang),
        Fault::ConnectionReset => return Some(Reply::Reset),
        Fault::AuthFailure => return Some(auth_failure(call, Some("sk-revoked-key-0000"))),
        Fault::RateLimit => match flavor {
            ProviderFlavor::Groq => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tokens",
                format!("Rate limit reached for model `{model}` in organization `org_01emulator` service tier `on_demand` on tokens per minute (TPM): Limit {GROQ_TPM}, Used {}, Requested {requested}. Please try again in 5.289s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing", GROQ_TPM - requested.min(GROQ_TPM) + 1),
            )
            .code("rate_limit_exceeded")
            .retry_after(6),
            ProviderFlavor::OpenRouter => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "",
                format!("{model} is temporarily rate-limited upstream. Please retry shortly."),
            ),
            ProviderFlavor::Mistral => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Requests rate limit exceeded",
            )
            .code("1300"),
            ProviderFlavor::DeepSeek => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Rate Limit Reached")
                    .code("rate_limit_exceeded")
            }
            _ => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tokens",
                format!("Rate limit reached for {model} in organization org-emulator on tokens per min (TPM): Limit {OPENAI_TPM}, Used {}, Requested {requested}. Please try again in 300ms. Visit https://platform.openai.com/account/rate-limits to learn more.", OPENAI_TPM - requested.min(OPENAI_TPM)),
            )
            .code("rate_limit_exceeded")
            .retry_after(1),
        },
        Fault::QuotaExhausted => match flavor {
            ProviderFlavor::Groq => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tokens",
                format!("Rate limit reached for model `{model}` in organization `org_01emulator` service tier `on_demand` on tokens per day (TPD): Limit 500000, Used 499950, Requested {requested}. Please try again in 23h59m12s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"),
            )
            .code("rate_limit_exceeded")
            .retry_after(86_352),
            ProviderFlavor::OpenRouter => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "",
                "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
            ),
            ProviderFlavor::DeepSeek => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "unknown_error",
                "Insufficient Balance",
            )
            .code("invalid_request_error"),
            ProviderFlavor::Mistral => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Monthly usage limit exceeded",
            )
            .code("1300"),
            _ => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            )
            .code("insufficient_quota"),
        },
        Fault::ServerError | Fault::StreamError => match flavor {
            ProviderFlavor::Groq => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "Internal Server Error",
            ),
            ProviderFlavor::Vllm => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "EngineCore encountered an issue. See stack trace (above) for the root cause.",
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            ),
        },
        Fault::Overloaded if flavor == ProviderFlavor::OpenRouter => {
            ApiError::new(StatusCode::BAD_GATEWAY, "", "Provider returned error")
        }
        Fault::CapacityExceeded if groq_like => ApiError::new(
            StatusCode::from_u16(498).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "capacity_exceeded",
            "The flex tier is currently at capacity. Please try again later or use the on_demand service tier.",
        )
        .code("capacity_exceeded"),
        Fault::Unavailable | Fault::Overloaded | Fault::CapacityExceeded => match flavor {
            ProviderFlavor::Groq => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal_server_error",
                "Service Unavailable",
            ),
            ProviderFlavor::OpenRouter => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                "No allowed providers are available for the selected model.",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The engine is currently overloaded, please try again later.",
            ),
        },
        Fault::RequestTooLarge => request_too_large(flavor, model, requested),
        Fault::ContextTooLong => context_too_long(flavor, requested.max(flavor.context_window() + 1), 0),
        Fault::StreamCut | Fault::MalformedJson => return None,
    };
    Some(render_error(call, &err).into())
}

fn request_too_large(flavor: ProviderFlavor, model: &str, requested: u64) -> ApiError {
    let requested = requested.max(GROQ_TPM + 1);
    match flavor {
        ProviderFlavor::Groq => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "tokens",
            format!("Request too large for model `{model}` in organization `org_01emulator` service tier `on_demand` on tokens per minute (TPM): Limit {GROQ_TPM}, Requested {requested}, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"),
        )
        .code("rate_limit_exceeded"),
        ProviderFlavor::OpenAi => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tokens",
            format!("Request too large for {model} in organization org-emulator on tokens per min (TPM): Limit {OPENAI_TPM}, Requested {}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.", requested.max(OPENAI_TPM + 1)),
        )
        .code("rate_limit_exceeded"),
        _ => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "Request too large",
        ),
    }
}

/// Each dialect's context-length error.
fn context_too_long(flavor: ProviderFlavor, prompt: u64, completion: u64) -> ApiError {
    let window = flavor.context_window();
    let total = prompt + completion;
    let bad = StatusCode::BAD_REQUEST;
    match flavor {
        ProviderFlavor::Groq => ApiError::new(
            bad,
            "invalid_request_error",
            format!("Please reduce the length of the messages or completion. This model's maximum context length is {window} tokens. However, you requested {total} tokens."),
        )
        .param("messages")
        .code("context_length_exceeded"),
        ProviderFlavor::OpenRouter => ApiError::new(
            bad,
            "",
            format!("This endpoint's maximum context length is {window} tokens. However, you requested about {total} tokens ({prompt} of text input, {completion} in the output). Please reduce the length of either one, or use the \"middle-out\" transform to compress your prompt automatically."),
        ),
        ProviderFlavor::Mistral => ApiError::new(
            bad,
            "invalid_request_message_error",
            format!("Prompt contains {prompt} tokens and {completion} draft tokens, too large for model with {window} maximum context length"),
        )
        .code("3051"),
        ProviderFlavor::Vllm => ApiError::new(
            bad,
            "BadRequestError",
            format!("You passed {prompt} input tokens and requested {completion} output tokens. However, the model's context length is only {window} tokens, resulting in a maximum input length of {} tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={prompt})", window.saturating_sub(completion)),
        )
        .param("input_tokens"),
        _ => ApiError::new(
            bad,
            "invalid_request_error",
            format!("This model's maximum context length is {window} tokens. However, you requested {total} tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the messages or completion."),
        )
        .param("messages")
        .code("context_length_exceeded"),
    }
}

fn has_model(call: &Call, model: &str) -> bool {
    let cfg = &call.shared.config;
    cfg.accept_unlisted_models
        || cfg.models.iter().any(|m| m == model)
        || (call.flavor() == ProviderFlavor::Ollama
            && cfg
                .models
                .iter()
                .any(|m| m.strip_suffix(":latest") == Some(model)))
}

fn model_not_found(call: &Call, model: &str) -> Reply {
    let err = match call.flavor() {
        ProviderFlavor::Vllm => ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
        )
        .param("model"),
        ProviderFlavor::Ollama => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("model \"{model}\" not found, try pulling it first"),
        ),
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .code("model_not_found"),
    };
    render_error(call, &err).into()
}

fn bad_request(call: &Call, message: impl Into<String>) -> Reply {
    render_error(
        call,
        &ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message),
    )
    .into()
}

fn parse_object(call: &Call) -> Result<Map<String, Value>, Reply> {
    match call.json::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => Err(bad_request(
            call,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
        )),
    }
}

/// Facts about one chat request.
struct ChatFacts {
    model: String,
    conv: Conversation,
    max_tokens: Option<u64>,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
    seed: Option<u64>,
    temperature: Option<f64>,
    /// `logprobs: true`, and how many alternatives per token.
    logprobs: Option<usize>,
}

fn chat_facts(call: &Call, body: &Map<String, Value>) -> Result<ChatFacts, Reply> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return Err(bad_request(call, "you must provide a model parameter"));
    }
    let messages = body.get("messages").and_then(Value::as_array);
    let Some(messages) = messages.filter(|m| !m.is_empty()) else {
        return Err(render_error(
            call,
            &ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "[] is too short - 'messages'",
            )
            .param("messages"),
        )
        .into());
    };
    let mut conv = Conversation::default();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        conv.push(role, content_text(m.get("content").unwrap_or(&Value::Null)));
    }
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    let options = body.get("stream_options");
    let logprobs = (body.get("logprobs").and_then(Value::as_bool) == Some(true)
        && returns_logprobs(call.flavor()))
    .then(|| {
        body.get("top_logprobs")
            .and_then(Value::as_u64)
            .map_or(0, |n| usize::try_from(n.min(20)).unwrap_or(0))
    });
    Ok(ChatFacts {
        seed: body.get("seed").and_then(Value::as_u64),
        temperature: body.get("temperature").and_then(Value::as_f64),
        logprobs,
        model,
        conv,
        max_tokens,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: options
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        continuous_usage: options
            .and_then(|o| o.get("continuous_usage_stats"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Whether this server answers `logprobs: true` (Groq and Mistral do
/// not: the field stays `null` or absent).
fn returns_logprobs(flavor: ProviderFlavor) -> bool {
    matches!(
        flavor,
        ProviderFlavor::OpenAi
            | ProviderFlavor::OpenRouter
            | ProviderFlavor::DeepSeek
            | ProviderFlavor::Vllm
            | ProviderFlavor::Ollama
    )
}

/// One token's `logprobs.content` entry.
fn logprob_entry(token: &TokenLogprob, top: usize) -> Value {
    let alternatives: Vec<Value> = std::iter::once(token.clone())
        .chain(token.alternatives(top.saturating_sub(1)))
        .take(top)
        .map(|t| json!({"token": t.token, "logprob": t.logprob, "bytes": t.token.as_bytes()}))
        .collect();
    json!({
        "token": token.token,
        "logprob": token.logprob,
        "bytes": token.token.as_bytes(),
        "top_logprobs": alternatives,
    })
}

async fn chat(call: &Call) -> Reply {
    let body = match parse_object(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let facts = match chat_facts(call, &body) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    if !has_model(call, &facts.model) {
        return model_not_found(call, &facts.model);
    }
    let flavor = call.flavor();
    let prompt_tokens = facts.conv.prompt_tokens();
    let requested = prompt_tokens + facts.max_tokens.unwrap_or(0);
    let fault = call.fault();
    if let Some(reply) = fault
        .filter(|f| !(facts.stream && *f == Fault::StreamError))
        .and_then(|f| fault_error(call, f, &facts.model, requested))
    {
        return reply;
    }
    if flavor == ProviderFlavor::Groq && requested > GROQ_TPM {
        return render_error(call, &request_too_large(flavor, &facts.model, requested)).into();
    }
    if requested > flavor.context_window() {
        let err = context_too_long(flavor, prompt_tokens, facts.max_tokens.unwrap_or(0));
        return render_error(call, &err).into();
    }
    let sampling = call.sampling();
    let answer = sampling.answer(&facts.conv, facts.max_tokens, facts.seed, facts.temperature);
    let logprobs = facts.logprobs.map(|top| {
        let tokens = sampling.logprobs(&facts.conv.key(), &answer);
        (tokens, top)
    });
    let usage = Usage {
        prompt: prompt_tokens,
        completion: answer.tokens(),
    };
    let finish = match answer.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    };
    let ids = Ids::new(call);
    if facts.stream {
        let tokens = Tokens {
            pieces: &answer.pieces,
            logprobs: logprobs.as_ref(),
        };
        return stream_chat(call, &facts, &ids, &tokens, finish, usage, fault);
    }
    if let Err(reply) = call.wait_for_answer(usage.completion).await {
        return reply;
    }
    let mut value = completion_body(call, &facts.model, &ids, &answer.text(), finish, usage);
    if let Some((tokens, top)) = &logprobs {
        let content: Vec<Value> = tokens.iter().map(|t| logprob_entry(t, *top)).collect();
        value["choices"][0]["logprobs"] = json!({"content": content, "refusal": null});
    }
    let text = value.to_string();
    let mut resp = match fault {
        Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()),
        Some(Fault::MalformedJson) => {
            with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes()))
        }
        _ => with_body(StatusCode::OK, JSON_TYPE, text),
    };
    common_headers(call, &mut resp, usage.prompt + usage.completion);
    resp.into()
}

#[derive(Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
}

/// The ids one completion carries.
struct Ids {
    id: String,
    created: i64,
    fingerprint: String,
    groq_request: String,
}

impl Ids {
    fn new(call: &Call) -> Self {
        let id = match call.flavor() {
            ProviderFlavor::OpenRouter => format!("gen-{}-{}", unix_secs(), call.id(20)),
            ProviderFlavor::Mistral => call.hex_id(32),
            ProviderFlavor::DeepSeek => uuid_like(call),
            ProviderFlavor::Groq => format!("chatcmpl-{}", uuid_like(call)),
            ProviderFlavor::Vllm => format!("chatcmpl-{}", call.hex_id(32)),
            ProviderFlavor::Ollama => format!("chatcmpl-{}", call.seq),
            _ => format!("chatcmpl-{}", call.id(29)),
        };
        let fingerprint = match call.flavor() {
            ProviderFlavor::Ollama => "fp_ollama".to_owned(),
            _ => format!("fp_{}", call.hex_id(10)),
        };
        Self {
            id,
            created: unix_secs(),
            fingerprint,
            groq_request: format!("req_01{}", call.id(24).to_lowercase()),
        }
    }
}

fn uuid_like(call: &Call) -> String {
    let h = call.hex_id(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn usage_json(call: &Call, usage: Usage) -> Value {
    let total = usage.prompt + usage.completion;
    match call.flavor() {
        ProviderFlavor::Groq => {
            let tps = call
                .flavor()
                .default_latency()
                .tokens_per_second
                .unwrap_or(500.0);
            let completion_time = usage.completion as f64 / tps;
            let prompt_time = usage.prompt as f64 / (tps * 20.0);
            json!({
                "queue_time": 0.0123,
                "prompt_tokens": usage.prompt,
                "prompt_time": round4(prompt_time),
                "completion_tokens": usage.completion,
                "completion_time": round4(completion_time),
                "total_tokens": total,
                "total_time": round4(prompt_time + completion_time),
            })
        }
        ProviderFlavor::OpenRouter => json!({
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": total,
            "cost": (usage.prompt as f64 * 0.15 + usage.completion as f64 * 0.6) / 1e6,
            "is_byok": false,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
        }),
        ProviderFlavor::DeepSeek => json!({
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": 0},
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": usage.prompt,
        }),
        ProviderFlavor::Mistral | ProviderFlavor::Ollama => json!({
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": total,
        }),
        ProviderFlavor::Vllm => json!({
            "prompt_tokens": usage.prompt,
            "total_tokens": total,
            "completion_tokens": usage.completion,
            "prompt_tokens_details": null,
        }),
        _ => json!({
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.completion,
            "total_tokens": total,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }),
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn completion_body(
    call: &Call,
    model: &str,
    ids: &Ids,
    text: &str,
    finish: &str,
    usage: Usage,
) -> Value {
    let flavor = call.flavor();
    let message = match flavor {
        ProviderFlavor::OpenAi => {
            json!({"role":"assistant","content":text,"refusal":null,"annotations":[]})
        }
        ProviderFlavor::OpenRouter => {
            json!({"role":"assistant","content":text,"refusal":null,"reasoning":null})
        }
        ProviderFlavor::Mistral => json!({"role":"assistant","tool_calls":null,"content":text}),
        ProviderFlavor::Vllm => {
            json!({"role":"assistant","reasoning_content":null,"content":text,"tool_calls":[]})
        }
        _ => json!({"role":"assistant","content":text}),
    };
    let mut choice = json!({"index":0,"message":message,"logprobs":null,"finish_reason":finish});
    match flavor {
        ProviderFlavor::OpenRouter => choice["native_finish_reason"] = json!(finish),
        ProviderFlavor::Vllm => choice["stop_reason"] = Value::Null,
        ProviderFlavor::Mistral | ProviderFlavor::Ollama => {
            if let Some(obj) = choice.as_object_mut() {
                obj.remove("logprobs");
            }
        }
        _ => {}
    }
    let mut body = json!({
        "id": ids.id,
        "object": "chat.completion",
        "created": ids.created,
        "model": model,
        "choices": [choice],
        "usage": usage_json(call, usage),
    });
    match flavor {
        ProviderFlavor::OpenAi => {
            body["service_tier"] = json!("default");
            body["system_fingerprint"] = json!(ids.fingerprint);
        }
        ProviderFlavor::Groq => {
            body["system_fingerprint"] = json!(ids.fingerprint);
            body["x_groq"] = json!({"id": ids.groq_request, "usage": {"dram_cached_tokens": 0, "sram_cached_tokens": 0}});
            body["service_tier"] = json!("on_demand");
        }
        ProviderFlavor::OpenRouter => body["provider"] = json!("OpenAI"),
        ProviderFlavor::DeepSeek | ProviderFlavor::Ollama => {
            body["system_fingerprint"] = json!(ids.fingerprint);
        }
        ProviderFlavor::Vllm => body["prompt_logprobs"] = Value::Null,
        _ => {}
    }
    body
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// A streamed answer's pieces, with their log-probabilities (and how many
/// alternatives each) when asked for.
struct Tokens<'a> {
    pieces: &'a [String],
    logprobs: Option<&'a (Vec<TokenLogprob>, usize)>,
}

fn stream_chat(
    call: &Call,
    facts: &ChatFacts,
    ids: &Ids,
    tokens: &Tokens<'_>,
    finish: &str,
    usage: Usage,
    fault: Option<Fault>,
) -> Reply {
    let (pieces, logprobs) = (tokens.pieces, tokens.logprobs);
    let flavor = call.flavor();
    // OpenAI marks every chunk `usage: null` when usage was asked for.
    let usage_null = facts.include_usage && flavor != ProviderFlavor::Mistral;
    let chunk = |delta: Value, finish: Option<&str>, extra: &[(&str, Value)]| -> Value {
        let mut choice = json!({"index":0,"delta":delta,"logprobs":null,"finish_reason":finish});
        if matches!(flavor, ProviderFlavor::Mistral | ProviderFlavor::Ollama) {
            if let Some(obj) = choice.as_object_mut() {
                obj.remove("logprobs");
            }
        }
        let mut c = json!({
            "id": ids.id,
            "object": "chat.completion.chunk",
            "created": ids.created,
            "model": facts.model,
            "choices": [choice],
        });
        if !matches!(
            flavor,
            ProviderFlavor::Mistral | ProviderFlavor::Vllm | ProviderFlavor::OpenRouter
        ) {
            c["system_fingerprint"] = json!(ids.fingerprint);
        }
        if flavor == ProviderFlavor::OpenRouter {
            c["provider"] = json!("OpenAI");
        }
        if usage_null {
            c["usage"] = Value::Null;
        }
        for (k, v) in extra {
            c[*k] = v.clone();
        }
        c
    };
    let mut chunks: Vec<(u64, Bytes)> = Vec::new();
    match flavor {
        ProviderFlavor::OpenRouter => {
            chunks.push((0, Bytes::from_static(b": OPENROUTER PROCESSING\n\n")))
        }
        ProviderFlavor::DeepSeek => chunks.push((0, Bytes::from_static(b": keep-alive\n\n"))),
        _ => {}
    }
    let first_extra: Vec<(&str, Value)> = if flavor == ProviderFlavor::Groq {
        vec![("x_groq", json!({"id": ids.groq_request}))]
    } else {
        Vec::new()
    };
    chunks.push((
        0,
        sse(&chunk(
            json!({"role":"assistant","content":""}),
            None,
            &first_extra,
        )),
    ));
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.iter().enumerate() {
        let mut c = chunk(json!({"content": piece}), None, &[]);
        if let Some(token) = logprobs.and_then(|(tokens, top)| Some((tokens.get(i)?, *top))) {
            c["choices"][0]["logprobs"] = json!({"content": [logprob_entry(token.0, token.1)]});
        }
        if flavor == ProviderFlavor::Mistral && i == last {
            // Mistral finishes on the last content chunk, with usage.
            c["choices"][0]["finish_reason"] = json!(finish);
            c["usage"] = usage_json(call, usage);
        }
        if flavor == ProviderFlavor::Vllm && facts.continuous_usage {
            c["usage"] = usage_json(
                call,
                Usage {
                    prompt: usage.prompt,
                    completion: i as u64 + 1,
                },
            );
        }
        chunks.push((1, sse(&c)));
    }
    if flavor != ProviderFlavor::Mistral {
        let extra: Vec<(&str, Value)> = if flavor == ProviderFlavor::Groq {
            vec![(
                "x_groq",
                json!({"id": ids.groq_request, "usage": usage_json(call, usage)}),
            )]
        } else {
            Vec::new()
        };
        chunks.push((0, sse(&chunk(json!({}), Some(finish), &extra))));
    }
    let always_usage_chunk = flavor == ProviderFlavor::OpenRouter;
    if (facts.include_usage || always_usage_chunk) && flavor != ProviderFlavor::Mistral {
        let mut c = chunk(json!({}), None, &[]);
        c["choices"] = json!([]);
        c["usage"] = usage_json(call, usage);
        chunks.push((0, sse(&c)));
    }
    chunks.push((0, Bytes::from_static(b"data: [DONE]\n\n")));

    let mut script = call.script(chunks);
    match fault {
        Some(Fault::StreamCut) => script = script.cut_midway(),
        Some(Fault::StreamError) => {
            let keep = (script.steps.len() / 2).max(1);
            script.steps.truncate(keep);
            for event in stream_error_events(call, ids, &facts.model) {
                script.steps.push((Duration::ZERO, event));
            }
        }
        Some(Fault::MalformedJson) => {
            let mid = script.steps.len() / 2;
            if let Some(step) = script.steps.get_mut(mid) {
                step.1 = Bytes::from(format!(
                    "data: {}\n\n",
                    String::from_utf8_lossy(&malformed(step.1.get(6..).unwrap_or_default()))
                ));
            }
        }
        _ => {}
    }
    let mut resp = streaming(SSE_TYPE, call.stream(script));
    set_header(&mut resp, "cache-control", "no-cache");
    common_headers(call, &mut resp, usage.prompt + usage.completion);
    resp.into()
}

/// The dialect's in-stream error, after a 200 has started.
fn stream_error_events(call: &Call, ids: &Ids, model: &str) -> Vec<Bytes> {
    match call.flavor() {
        ProviderFlavor::Groq => {
            let c = json!({
                "id": ids.id, "object": "chat.completion.chunk", "created": ids.created, "model": model,
                "system_fingerprint": ids.fingerprint,
                "choices": [{"index":0,"delta":{},"logprobs":null,"finish_reason":null}],
                "x_groq": {"id": ids.groq_request, "error": "Internal Server Error: the stream stopped early"},
            });
            vec![sse(&c), Bytes::from_static(b"data: [DONE]\n\n")]
        }
        ProviderFlavor::OpenRouter => {
            let c = json!({
                "id": ids.id, "object": "chat.completion.chunk", "created": ids.created, "model": model,
                "provider": "OpenAI",
                "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
                "choices": [{"index":0,"delta":{"content":""},"finish_reason":"error"}],
            });
            vec![sse(&c)]
        }
        ProviderFlavor::Vllm => vec![
            sse(
                &json!({"error": {"object":"error","message":"EngineCore encountered an issue.","type":"InternalServerError","param":null,"code":500}}),
            ),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ],
        _ => vec![sse(&json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null
        }}))],
    }
}

fn models(call: &Call) -> Reply {
    let flavor = call.flavor();
    let data: Vec<Value> = call
        .shared
        .config
        .models
        .iter()
        .map(|id| model_object(flavor, id))
        .collect();
    let mut resp = json_response(StatusCode::OK, &json!({"object":"list","data":data}));
    common_headers(call, &mut resp, 0);
    resp.into()
}

fn model(call: &Call, id: &str) -> Reply {
    if !has_model(call, id) {
        return model_not_found(call, id);
    }
    let mut resp = json_response(StatusCode::OK, &model_object(call.flavor(), id));
    common_headers(call, &mut resp, 0);
    resp.into()
}

fn model_object(flavor: ProviderFlavor, id: &str) -> Value {
    let owner = match flavor {
        ProviderFlavor::Groq => "Groq",
        ProviderFlavor::Vllm => "vllm",
        ProviderFlavor::Ollama => "library",
        ProviderFlavor::Mistral => "mistralai",
        ProviderFlavor::DeepSeek => "deepseek",
        _ => "system",
    };
    let mut m = json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": owner});
    if flavor == ProviderFlavor::Groq {
        m["active"] = json!(true);
        m["context_window"] = json!(131_072);
    }
    if flavor == ProviderFlavor::Vllm {
        m["max_model_len"] = json!(flavor.context_window());
        m["root"] = json!(id);
    }
    m
}

fn default_dimensions(call: &Call, model: &str) -> usize {
    if model.contains("3-small") || model.contains("ada-002") {
        1536
    } else if model.contains("3-large") {
        3072
    } else if model.contains("mistral-embed") {
        1024
    } else {
        call.shared.config.embedding_dimensions
    }
}

async fn embeddings(call: &Call) -> Reply {
    let body = match parse_object(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return bad_request(call, "you must provide a model parameter");
    }
    if !has_model(call, &model) {
        return model_not_found(call, &model);
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![token_text(items)]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Array(tokens) => token_text(tokens),
                _ => String::new(),
            })
            .collect(),
        _ => return bad_request(call, "'input' is a required property"),
    };
    let tokens: u64 = inputs.iter().map(|i| estimate_tokens(i).max(1)).sum();
    if let Some(reply) = call
        .fault()
        .and_then(|f| fault_error(call, f, &model, tokens))
    {
        return reply;
    }
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| *d > 0)
        .unwrap_or_else(|| default_dimensions(call, &model));
    let base64_out = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = embed(input, dims);
            let embedding = if base64_out {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object":"embedding","index":index,"embedding":embedding})
        })
        .collect();
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    );
    common_headers(call, &mut resp, tokens);
    resp.into()
}

/// Token-id input stands for text; the ids themselves make it deterministic.
fn token_text(tokens: &[Value]) -> String {
    tokens
        .iter()
        .map(|t| format!("t{}", t.as_u64().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_groq_and_openai_examples() {
        assert_eq!(go_duration(7.66), "7.66s");
        assert_eq!(go_duration(179.56), "2m59.56s");
        assert_eq!(go_duration(0.012), "12ms");
        assert_eq!(go_duration(1.0), "1s");
        assert_eq!(go_duration(360.0), "6m0s");
        assert_eq!(go_duration(3600.0), "1h0m0s");
        assert_eq!(go_duration(0.0), "0s");
    }

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask("sk-abcdefghijkl1234"), "sk-************1234");
        assert_eq!(mask("short"), "*****");
    }
}
