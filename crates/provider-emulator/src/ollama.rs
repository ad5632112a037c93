//! Ollama's native API: `/`, `/api/version`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/chat`, `/api/generate` (NDJSON streaming by default,
//! zero metrics omitted), `/api/embed` and the legacy `/api/embeddings`.
//! `/v1/*` is Ollama's OpenAI-compatible layer, served by the `openai` module.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::clock::rfc3339_nanos_now;
use crate::credentials::Credentials;
use crate::exchange::{Call, Reply, cut_body, lock, malformed, plain, streaming, with_body};
use crate::faults::Fault;
use crate::text::{Conversation, Finish, content_text, embed, estimate_tokens, fnv1a};

/// The version `/api/version` reports.
pub(crate) const OLLAMA_VERSION: &str = "0.12.6";

const JSON_TYPE: &str = "application/json; charset=utf-8";
const NDJSON_TYPE: &str = "application/x-ndjson";
const MID_STREAM_ERROR: &str = "an error was encountered while running the model";
/// Context window of the embedding models (all-minilm's is 512).
const EMBED_CONTEXT: u64 = 512;

pub(crate) async fn handle(call: &Call) -> Reply {
    if call.path.starts_with("/v1/") {
        return crate::openai::handle(call).await;
    }
    if let Some(reply) = check_auth(call) {
        return reply;
    }
    let read = call.method == Method::GET || call.method == Method::HEAD;
    match (read, &call.method, call.path.as_str()) {
        (true, _, "/") => plain(StatusCode::OK, "Ollama is running").into(),
        (true, _, "/api/version") => ok_json(&json!({ "version": OLLAMA_VERSION })),
        (true, _, "/api/tags") => tags(call),
        (_, &Method::GET, "/api/ps") => ok_json(&json!({ "models": [] })),
        (_, &Method::POST, "/api/show") => show(call),
        (_, &Method::POST, "/api/chat") => generate(call, Mode::Chat).await,
        (_, &Method::POST, "/api/generate") => generate(call, Mode::Generate).await,
        (_, &Method::POST, "/api/embed") => embed_route(call, false).await,
        (_, &Method::POST, "/api/embeddings") => embed_route(call, true).await,
        _ => plain(StatusCode::NOT_FOUND, "404 page not found").into(),
    }
}

/// Ollama has no auth locally; ollama.com wants a Bearer key.
fn check_auth(call: &Call) -> Option<Reply> {
    let Credentials::ApiKey(key) = call.shared.credentials() else {
        return None;
    };
    let sent = call
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    (sent != Some(key.as_str())).then(|| error(StatusCode::UNAUTHORIZED, "unauthorized"))
}

fn ok_json(value: &Value) -> Reply {
    with_body(StatusCode::OK, JSON_TYPE, value.to_string()).into()
}

fn error(status: StatusCode, message: &str) -> Reply {
    with_body(status, JSON_TYPE, json!({ "error": message }).to_string()).into()
}

/// `llama3.2` means `llama3.2:latest`.
fn normalise(model: &str) -> String {
    if model.contains(':') {
        model.to_owned()
    } else {
        format!("{model}:latest")
    }
}

fn has_model(call: &Call, model: &str) -> bool {
    let cfg = &call.shared.config;
    let wanted = normalise(model);
    cfg.accept_unlisted_models || cfg.models.iter().any(|m| normalise(m) == wanted)
}

fn family(model: &str) -> &'static str {
    if model.contains("minilm") || model.contains("bert") {
        "bert"
    } else if model.contains("nomic") {
        "nomic-bert"
    } else if model.contains("qwen") {
        "qwen2"
    } else {
        "llama"
    }
}

fn tags(call: &Call) -> Reply {
    let models: Vec<Value> = call
        .shared
        .config
        .models
        .iter()
        .map(|name| {
            let name = normalise(name);
            let digest = format!("{:016x}{:016x}", fnv1a(name.as_bytes()), fnv1a(b"digest"));
            json!({
                "name": name,
                "model": name,
                "modified_at": "2025-06-01T10:00:00.000000000Z",
                "size": 1_000_000 + fnv1a(name.as_bytes()) % 4_000_000_000,
                "digest": digest,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family(&name),
                    "families": null,
                    "parameter_size": "7B",
                    "quantization_level": "Q4_K_M"
                }
            })
        })
        .collect();
    ok_json(&json!({ "models": models }))
}

fn show(call: &Call) -> Reply {
    let Ok(body) = call.json::<Value>() else {
        return error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let model = body
        .get("model")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !has_model(call, model) {
        return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
    }
    ok_json(&json!({
        "modelfile": format!("FROM {model}\n"),
        "parameters": "stop \"<|eot_id|>\"",
        "template": "{{ .Prompt }}",
        "details": {"parent_model": "", "format": "gguf", "family": family(model), "families": [family(model)], "parameter_size": "7B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": family(model), "llama.context_length": call.flavor().context_window()},
        "capabilities": ["completion"]
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chat,
    Generate,
}

/// Parses the request body; `Err` is the 400 reply.
fn parse_body(call: &Call) -> Result<Map<String, Value>, Reply> {
    if call.body.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "missing request body"));
    }
    match call.json::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "json: cannot unmarshal into Go value of type api.ChatRequest",
        )),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, &e.to_string())),
    }
}

/// Replies shared by every inference route: hang, reset, plain errors.
/// `None` for faults that change the success path.
fn fault_reply(fault: Fault) -> Option<Reply> {
    Some(match fault {
        Fault::Hang => Reply::Hang,
        Fault::ConnectionReset => Reply::Reset,
        Fault::RateLimit => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests, please retry later",
        ),
        Fault::QuotaExhausted => error(
            StatusCode::TOO_MANY_REQUESTS,
            "you have reached your usage limit, please upgrade to continue",
        ),
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "llama runner process has terminated: exit status 2",
        ),
        Fault::Unavailable | Fault::Overloaded | Fault::CapacityExceeded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server busy, please try again.  maximum pending requests exceeded",
        ),
        Fault::RequestTooLarge | Fault::ContextTooLong => error(
            StatusCode::BAD_REQUEST,
            "the input length exceeds the context length",
        ),
        Fault::AuthFailure => error(StatusCode::UNAUTHORIZED, "unauthorized"),
        Fault::StreamCut | Fault::StreamError | Fault::MalformedJson => return None,
    })
}

fn conversation(mode: Mode, body: &Map<String, Value>) -> Conversation {
    let mut conv = Conversation::default();
    match mode {
        Mode::Chat => {
            for m in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                conv.push(role, content_text(m.get("content").unwrap_or(&Value::Null)));
            }
        }
        Mode::Generate => {
            if let Some(system) = body.get("system").and_then(Value::as_str) {
                conv.push("system", system);
            }
            if let Some(prompt) = body.get("prompt").and_then(Value::as_str) {
                if !prompt.is_empty() {
                    conv.push("user", prompt);
                }
            }
        }
    }
    conv
}

async fn generate(call: &Call, mode: Mode) -> Reply {
    let body = match parse_body(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model is required");
    }
    if !has_model(call, &model) {
        return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
    }
    let fault = call.fault();
    if let Some(reply) = fault.and_then(fault_reply) {
        return reply;
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let conv = conversation(mode, &body);
    let content_key = match mode {
        Mode::Chat => "message",
        Mode::Generate => "response",
    };
    let piece = |text: &str| -> Value {
        match mode {
            Mode::Chat => json!({ "role": "assistant", "content": text }),
            Mode::Generate => Value::String(text.to_owned()),
        }
    };
    if conv.is_empty() {
        // Empty input loads (or with keep_alive 0 unloads) the model.
        let unload =
            matches!(body.get("keep_alive"), Some(v) if v == &json!(0) || v == &json!("0"));
        let mut obj = Map::new();
        obj.insert("model".into(), json!(model));
        obj.insert("created_at".into(), json!(rfc3339_nanos_now()));
        obj.insert(content_key.into(), piece(""));
        obj.insert(
            "done_reason".into(),
            json!(if unload { "unload" } else { "load" }),
        );
        obj.insert("done".into(), json!(true));
        return ok_json(&Value::Object(obj));
    }
    let prompt_tokens = conv.prompt_tokens();
    // Ollama truncates an over-long prompt to fit its context rather than failing.
    let max_tokens = body
        .get("options")
        .and_then(|o| o.get("num_predict"))
        .and_then(Value::as_i64)
        .and_then(|n| u64::try_from(n).ok());
    let options = body.get("options");
    let sampling = call.sampling();
    let answer = sampling.answer(
        &conv,
        max_tokens,
        options.and_then(|o| o.get("seed")).and_then(Value::as_u64),
        options
            .and_then(|o| o.get("temperature"))
            .and_then(Value::as_f64),
    );
    // `logprobs: true` (and `top_logprobs: N`) at the top level.
    let logprobs: Option<Vec<Value>> = (body.get("logprobs").and_then(Value::as_bool)
        == Some(true))
    .then(|| {
        let top = body
            .get("top_logprobs")
            .and_then(Value::as_u64)
            .map_or(0, |n| usize::try_from(n.min(20)).unwrap_or(0));
        sampling
            .logprobs(&conv.key(), &answer)
            .iter()
            .map(|t| {
                let alternatives: Vec<Value> = std::iter::once(t.clone())
                    .chain(t.alternatives(top.saturating_sub(1)))
                    .take(top)
                    .map(|a| json!({"token": a.token, "logprob": a.logprob, "bytes": a.token.as_bytes()}))
                    .collect();
                json!({"token": t.token, "logprob": t.logprob, "bytes": t.token.as_bytes(), "top_logprobs": alternatives})
            })
            .collect()
    });
    let metrics = metrics(call, &model, &conv, answer.tokens());
    let done_reason = match answer.finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    };
    let mut final_obj = Map::new();
    final_obj.insert("model".into(), json!(model));
    final_obj.insert("created_at".into(), json!(rfc3339_nanos_now()));
    final_obj.insert(content_key.into(), piece(""));
    final_obj.insert("done".into(), json!(true));
    final_obj.insert("done_reason".into(), json!(done_reason));
    if mode == Mode::Generate && !body.get("raw").and_then(Value::as_bool).unwrap_or(false) {
        let context: Vec<u64> = (0..prompt_tokens + answer.tokens())
            .map(|i| 128 + (fnv1a(&i.to_le_bytes()) % 128_000))
            .collect();
        final_obj.insert("context".into(), json!(context));
    }
    for (name, value) in &metrics {
        if *value != 0 {
            final_obj.insert((*name).into(), json!(value));
        }
    }

    if !stream {
        final_obj.insert(content_key.into(), piece(&answer.text()));
        if let Some(logprobs) = &logprobs {
            final_obj.insert("logprobs".into(), json!(logprobs));
        }
        let text = Value::Object(final_obj).to_string();
        if let Err(reply) = call.wait_for_answer(answer.tokens()).await {
            return reply;
        }
        return match fault {
            Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()).into(),
            Some(Fault::StreamError) => error(StatusCode::INTERNAL_SERVER_ERROR, MID_STREAM_ERROR),
            Some(Fault::MalformedJson) => {
                with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes())).into()
            }
            _ => with_body(StatusCode::OK, JSON_TYPE, text).into(),
        };
    }

    let mut lines: Vec<(u64, Bytes)> = answer
        .pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut line = json!({
                "model": model,
                "created_at": rfc3339_nanos_now(),
                content_key: piece(p),
                "done": false,
            });
            if let Some(entry) = logprobs.as_ref().and_then(|l| l.get(i)) {
                line["logprobs"] = json!([entry]);
            }
            (1, ndjson_line(&line))
        })
        .collect();
    lines.push((0, ndjson_line(&Value::Object(final_obj))));
    let mut script = call.script(lines);
    match fault {
        Some(Fault::StreamCut) => script = script.cut_midway(),
        Some(Fault::StreamError) => {
            let keep = (script.steps.len() / 2).max(1);
            script.steps.truncate(keep);
            script.steps.push((
                std::time::Duration::ZERO,
                ndjson_line(&json!({ "error": MID_STREAM_ERROR })),
            ));
        }
        Some(Fault::MalformedJson) => {
            let mid = script.steps.len() / 2;
            if let Some(step) = script.steps.get_mut(mid) {
                let mut bad = malformed(&step.1);
                bad.push(b'\n');
                step.1 = Bytes::from(bad);
            }
        }
        _ => {}
    }
    streaming(NDJSON_TYPE, call.stream(script)).into()
}

fn ndjson_line(value: &Value) -> Bytes {
    let mut line = value.to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The final object's metrics, in nanoseconds, from the nominal speed.
/// Zero values are omitted by the caller, as Go's `omitempty` does: no
/// `load_duration` once the model is loaded, no `prompt_eval_*` when the
/// prompt equals the model's previous one (fully cached).
fn metrics(
    call: &Call,
    model: &str,
    conv: &Conversation,
    output_tokens: u64,
) -> Vec<(&'static str, u64)> {
    let tps = call
        .latency()
        .tokens_per_second
        .filter(|t| *t > 0.0)
        .or(call.flavor().default_latency().tokens_per_second)
        .unwrap_or(40.0);
    let key = fnv1a(conv.key().as_bytes());
    let (cached, first_load) = {
        let mut memory = lock(&call.shared.memory);
        let cached = memory.last_prompt.insert(normalise(model), key) == Some(key);
        let first_load = memory.loaded.insert(normalise(model), ()).is_none();
        (cached, first_load)
    };
    let prompt_tokens = if cached { 0 } else { conv.prompt_tokens() };
    let load = if first_load { 1_254_000_000 } else { 0 };
    let prompt_eval = nanos(prompt_tokens as f64 / (tps * 20.0));
    let eval = nanos(output_tokens as f64 / tps);
    vec![
        ("total_duration", load + prompt_eval + eval + 180_000),
        ("load_duration", load),
        ("prompt_eval_count", prompt_tokens),
        ("prompt_eval_duration", prompt_eval),
        ("eval_count", output_tokens),
        ("eval_duration", eval),
    ]
}

fn nanos(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e9) as u64
    } else {
        0
    }
}

async fn embed_route(call: &Call, legacy: bool) -> Reply {
    let body = match parse_body(call) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model is required");
    }
    if !has_model(call, &model) {
        return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
    }
    let fault = call.fault();
    if let Some(reply) = fault.and_then(fault_reply) {
        return reply;
    }
    let inputs: Vec<String> = if legacy {
        vec![
            body.get("prompt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ]
    } else {
        match body.get("input") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    };
    let truncate = body
        .get("truncate")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !truncate && inputs.iter().any(|i| estimate_tokens(i) > EMBED_CONTEXT) {
        return error(
            StatusCode::BAD_REQUEST,
            "the input length exceeds the context length",
        );
    }
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| *d > 0)
        .unwrap_or(call.shared.config.embedding_dimensions);
    let vectors: Vec<Vec<f32>> = inputs.iter().map(|i| embed(i, dims)).collect();
    let tokens: u64 = inputs
        .iter()
        .map(|i| estimate_tokens(i).min(EMBED_CONTEXT))
        .sum();
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    let value = if legacy {
        json!({ "embedding": vectors.first().cloned().unwrap_or_default() })
    } else {
        let mut obj = Map::new();
        obj.insert("model".into(), json!(model));
        obj.insert("embeddings".into(), json!(vectors));
        obj.insert(
            "total_duration".into(),
            json!(14_143_917u64 + tokens * 50_000),
        );
        obj.insert("load_duration".into(), json!(1_019_500u64));
        if tokens > 0 {
            obj.insert("prompt_eval_count".into(), json!(tokens));
        }
        Value::Object(obj)
    };
    let text = value.to_string();
    match fault {
        Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()).into(),
        Some(Fault::StreamError) => error(StatusCode::INTERNAL_SERVER_ERROR, MID_STREAM_ERROR),
        Some(Fault::MalformedJson) => {
            with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes())).into()
        }
        _ => with_body(StatusCode::OK, JSON_TYPE, text).into(),
    }
}
