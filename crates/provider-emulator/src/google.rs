//! Google: Vertex AI (`/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:{method}`,
//! Bearer access tokens it issued itself), its OAuth token endpoint
//! (`POST /token`, RS256 JWT-bearer grant), a metadata server
//! (`/computeMetadata/v1/...`, requires `Metadata-Flavor: Google`), and the
//! Gemini Developer API (`/v1beta/models/{m}:{method}`, API key).
//!
//! Streams use `\r\n\r\n`-separated SSE with no `[DONE]` (`alt=sse`), or a
//! JSON array streamed incrementally without it; errors on that path are
//! array-wrapped too.

use bytes::Bytes;
use google_auth::verify_rs256;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::clock::{rfc3339, unix_secs};
use crate::credentials::{Credentials, GOOGLE_TOKEN_URI};
use crate::exchange::{
    Call, EmuBody, Reply, Script, cut_body, form_pairs, json as json_response, lock, malformed,
    plain, set_header, streaming, with_body,
};
use crate::faults::Fault;
use crate::flavor::ProviderFlavor;
use crate::text::{Conversation, Finish, content_text, embed, estimate_tokens};

const JSON_TYPE: &str = "application/json; charset=UTF-8";
const SSE_TYPE: &str = "text/event-stream";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Access tokens live an hour; `expires_in` says 3599.
const TOKEN_LIFETIME: i64 = 3599;
/// Pieces per streamed chunk (Google streams several tokens at a time).
const PIECES_PER_CHUNK: usize = 4;

pub(crate) async fn handle(call: &Call) -> Reply {
    let vertex = call.flavor() == ProviderFlavor::Vertex;
    let path = call.path.as_str();
    if vertex && path == "/token" {
        return if call.method == Method::POST {
            token_endpoint(call)
        } else {
            google_error(
                call,
                StatusCode::METHOD_NOT_ALLOWED,
                "INVALID_ARGUMENT",
                "Method not allowed",
                false,
            )
            .into()
        };
    }
    if vertex && (path == "/" || path.starts_with("/computeMetadata/")) {
        return metadata(call);
    }
    let target = if vertex {
        vertex_target(path)
    } else {
        gemini_target(path)
    };
    if !vertex && call.method == Method::GET && (path == "/v1beta/models" || path == "/v1/models") {
        if let Some(reply) = gemini_auth(call) {
            return reply;
        }
        return gemini_models(call);
    }
    let Some(target) = target else {
        return google_error(
            call,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("The requested URL {path} was not found on this server."),
            false,
        )
        .into();
    };
    let auth = if vertex {
        vertex_auth(call, &target)
    } else {
        gemini_auth(call)
    };
    if let Some(reply) = auth {
        return reply;
    }
    if call.method != Method::POST {
        return google_error(
            call,
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_ARGUMENT",
            "Method not allowed",
            false,
        )
        .into();
    }
    let cfg = &call.shared.config;
    if !cfg.accept_unlisted_models && !cfg.models.contains(&target.model) {
        let message = if vertex {
            format!(
                "Publisher Model `projects/{}/locations/{}/publishers/google/models/{}` was not found or your project does not have access to it. Please ensure you are using a valid model version. For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions",
                target.project, target.location, target.model
            )
        } else {
            format!(
                "models/{} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
                target.model
            )
        };
        return google_error(call, StatusCode::NOT_FOUND, "NOT_FOUND", &message, false).into();
    }
    match target.method.as_str() {
        "generateContent" => generate(call, &target, StreamMode::None).await,
        "streamGenerateContent" => {
            let mode = if call.query_param("alt").as_deref() == Some("sse") {
                StreamMode::Sse
            } else {
                StreamMode::Array
            };
            generate(call, &target, mode).await
        }
        "countTokens" => count_tokens(call),
        "embedContent" => embed_content(call, &target).await,
        "batchEmbedContents" if !vertex => batch_embed(call).await,
        "predict" if vertex => predict(call, &target).await,
        other => google_error(
            call,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Method {other} not found."),
            false,
        )
        .into(),
    }
}

/// The model and method a request addresses.
struct ModelAddress {
    project: String,
    location: String,
    model: String,
    method: String,
}

fn split_model_method(last: &str) -> Option<(String, String)> {
    let (model, method) = last.rsplit_once(':')?;
    Some((model.to_owned(), method.to_owned()))
}

fn vertex_target(path: &str) -> Option<ModelAddress> {
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v1beta1/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [
            "projects",
            project,
            "locations",
            location,
            "publishers",
            "google",
            "models",
            last,
        ] => {
            let (model, method) = split_model_method(last)?;
            Some(ModelAddress {
                project: (*project).to_owned(),
                location: (*location).to_owned(),
                model,
                method,
            })
        }
        _ => None,
    }
}

fn gemini_target(path: &str) -> Option<ModelAddress> {
    let last = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = split_model_method(last)?;
    Some(ModelAddress {
        project: String::new(),
        location: String::new(),
        model,
        method,
    })
}

/// A `google.rpc.Status` error body; wrapped in an array on the
/// non-SSE streaming path.
fn google_error(
    call: &Call,
    status: StatusCode,
    code_name: &str,
    message: &str,
    array: bool,
) -> Response<EmuBody> {
    error_with_details(call, status, code_name, message, Vec::new(), array)
}

fn error_with_details(
    _call: &Call,
    status: StatusCode,
    code_name: &str,
    message: &str,
    details: Vec<Value>,
    array: bool,
) -> Response<EmuBody> {
    let mut error = json!({"code": status.as_u16(), "message": message, "status": code_name});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    let body = json!({ "error": error });
    let body = if array { json!([body]) } else { body };
    let mut resp = with_body(status, JSON_TYPE, body.to_string());
    set_header(&mut resp, "vary", "Origin, X-Origin, Referer");
    resp
}

// ---------------------------------------------------------------- auth

fn vertex_auth(call: &Call, target: &ModelAddress) -> Option<Reply> {
    let Credentials::ServiceAccount(sa) = call.shared.credentials() else {
        return None;
    };
    let token = call
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let valid = token.is_some_and(|t| {
        lock(&call.shared.memory)
            .access_tokens
            .get(t)
            .is_some_and(|expiry| *expiry > unix_secs())
    });
    if !valid {
        let reason = if token.is_none() {
            "CREDENTIALS_MISSING"
        } else {
            "ACCESS_TOKEN_EXPIRED"
        };
        return Some(unauthenticated(call, reason).into());
    }
    if target.project != sa.project_id {
        let message = format!(
            "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/{}/locations/{}/publishers/google/models/{}' (or it may not exist).",
            target.project, target.location, target.model
        );
        return Some(
            error_with_details(
                call,
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                &message,
                vec![json!({"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"aiplatform.googleapis.com","metadata":{"permission":"aiplatform.endpoints.predict"}})],
                false,
            )
            .into(),
        );
    }
    None
}

fn unauthenticated(call: &Call, reason: &str) -> Response<EmuBody> {
    let mut resp = error_with_details(
        call,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        vec![
            json!({"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":reason,"domain":"googleapis.com","metadata":{"service":"aiplatform.googleapis.com","method":"google.cloud.aiplatform.v1.PredictionService.GenerateContent"}}),
        ],
        false,
    );
    set_header(
        &mut resp,
        "www-authenticate",
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
    );
    resp
}

fn gemini_auth(call: &Call) -> Option<Reply> {
    let Credentials::ApiKey(expected) = call.shared.credentials() else {
        return None;
    };
    let sent = call
        .header("x-goog-api-key")
        .map(str::to_owned)
        .or_else(|| call.query_param("key"));
    match sent {
        Some(key) if &key == expected => None,
        Some(_) => Some(api_key_invalid(call).into()),
        None => Some(
            google_error(
                call,
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                false,
            )
            .into(),
        ),
    }
}

fn api_key_invalid(call: &Call) -> Response<EmuBody> {
    error_with_details(
        call,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        vec![
            json!({"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}),
        ],
        false,
    )
}

// ---------------------------------------------------------------- token endpoint

fn oauth_error(error: &str, description: &str) -> Reply {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
    .into()
}

/// Issues a token and remembers it.
fn issue_token(call: &Call) -> String {
    let token = format!("ya29.c.b0A{}", call.id(120));
    lock(&call.shared.memory)
        .access_tokens
        .insert(token.clone(), unix_secs() + TOKEN_LIFETIME);
    token
}

fn token_endpoint(call: &Call) -> Reply {
    let form = form_pairs(&call.body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some(JWT_BEARER_GRANT) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            );
        }
        None => return oauth_error("unsupported_grant_type", "Invalid grant_type: "),
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let Credentials::ServiceAccount(sa) = call.shared.credentials() else {
        // No account configured: any well-formed assertion gets a token.
        return token_response(call);
    };
    let Ok(decoded) = verify_rs256(assertion, &sa.public_key_der) else {
        return if google_auth::decode_jwt(assertion).is_ok() {
            oauth_error("invalid_grant", "Invalid JWT Signature.")
        } else {
            oauth_error("invalid_grant", "Invalid JWT: Unable to parse the JWT.")
        };
    };
    let claims = &decoded.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(sa.client_email.as_str()) {
        return oauth_error("invalid_grant", "Invalid grant: account not found");
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if aud != sa.token_uri && aud != GOOGLE_TOKEN_URI {
        return oauth_error(
            "invalid_grant",
            &format!(
                "Invalid JWT: Failed audience check. The expected audience is {}.",
                sa.token_uri
            ),
        );
    }
    let short_lived = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return oauth_error("invalid_grant", short_lived);
    };
    let now = unix_secs();
    // Google tolerates a little clock skew on iat.
    if exp <= iat || exp - iat > 3600 || exp <= now || iat > now + 300 {
        return oauth_error("invalid_grant", short_lived);
    }
    if claims
        .get("scope")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && claims.get("target_audience").is_none()
    {
        return oauth_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    token_response(call)
}

fn token_response(call: &Call) -> Reply {
    let token = issue_token(call);
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}),
    );
    set_header(
        &mut resp,
        "cache-control",
        "no-cache, no-store, max-age=0, must-revalidate",
    );
    resp.into()
}

// ---------------------------------------------------------------- metadata server

fn metadata(call: &Call) -> Reply {
    let flavored = call
        .header("metadata-flavor")
        .is_some_and(|v| v.eq_ignore_ascii_case("Google"));
    let mut resp = if !flavored {
        with_body(
            StatusCode::FORBIDDEN,
            "text/html; charset=UTF-8",
            "Missing required header: Metadata-Flavor\n",
        )
    } else {
        let sa_email = match call.shared.credentials() {
            Credentials::ServiceAccount(sa) => sa.client_email.clone(),
            _ => "default@emulator-project.iam.gserviceaccount.com".to_owned(),
        };
        let project = match call.shared.credentials() {
            Credentials::ServiceAccount(sa) => sa.project_id.clone(),
            _ => crate::credentials::TEST_PROJECT_ID.to_owned(),
        };
        match (call.method.clone(), call.path.as_str()) {
            (Method::GET, "/") => plain(StatusCode::OK, "computeMetadata/\n"),
            (Method::GET, "/computeMetadata/v1/instance/service-accounts/default/token") => {
                let token = issue_token(call);
                json_response(
                    StatusCode::OK,
                    &json!({"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}),
                )
            }
            (Method::GET, "/computeMetadata/v1/project/project-id") => {
                plain(StatusCode::OK, &project)
            }
            (Method::GET, "/computeMetadata/v1/instance/service-accounts/default/email") => {
                plain(StatusCode::OK, &sa_email)
            }
            (Method::GET, "/computeMetadata/v1/instance/zone") => {
                plain(StatusCode::OK, "projects/1234567890/zones/us-central1-a")
            }
            _ => with_body(
                StatusCode::NOT_FOUND,
                "text/html; charset=UTF-8",
                "Not Found\n",
            ),
        }
    };
    set_header(&mut resp, "metadata-flavor", "Google");
    resp.into()
}

// ---------------------------------------------------------------- generation

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamMode {
    None,
    Sse,
    Array,
}

fn parse(call: &Call, array: bool) -> Result<Map<String, Value>, Reply> {
    match call.json::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(_) => Err(google_error(
            call,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
            array,
        )
        .into()),
    }
}

fn conversation(body: &Map<String, Value>) -> Conversation {
    let mut conv = Conversation::default();
    let system = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"));
    if let Some(system) = system {
        let text = content_text(system.get("parts").unwrap_or(system));
        if !text.is_empty() {
            conv.push("system", text);
        }
    }
    for c in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        conv.push(role, content_text(c.get("parts").unwrap_or(&Value::Null)));
    }
    conv
}

/// Thinking tokens: 2.5 models think unless the budget is 0 (Pro cannot
/// turn it off; Flash-Lite does not think by default).
fn thoughts(model: &str, config: Option<&Value>, answer_tokens: u64) -> u64 {
    let budget = config
        .and_then(|c| c.get("thinkingConfig"))
        .and_then(|t| t.get("thinkingBudget"))
        .and_then(Value::as_i64);
    let thinks = model.contains("2.5") || model.contains("gemini-3");
    match budget {
        _ if !thinks => 0,
        Some(0) if model.contains("pro") => 128,
        Some(0) => 0,
        None if model.contains("flash-lite") => 0,
        Some(b) if b > 0 => (answer_tokens * 2).min(u64::try_from(b).unwrap_or(0)),
        _ => answer_tokens * 2,
    }
}

fn fault_reply(call: &Call, fault: Fault, model: &str, prompt: u64, array: bool) -> Option<Reply> {
    let vertex = call.flavor() == ProviderFlavor::Vertex;
    let resp = match fault {
        Fault::Hang => return Some(Reply::Hang),
        Fault::ConnectionReset => return Some(Reply::Reset),
        Fault::AuthFailure => {
            if vertex {
                unauthenticated(call, "ACCESS_TOKEN_EXPIRED")
            } else {
                api_key_invalid(call)
            }
        }
        Fault::RateLimit if vertex => google_error(
            call,
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
            array,
        ),
        Fault::RateLimit | Fault::QuotaExhausted => {
            let per_day = fault == Fault::QuotaExhausted;
            let (metric, quota_id, delay) = if per_day {
                (
                    "generate_content_free_tier_requests",
                    "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                    "43200s",
                )
            } else {
                (
                    "generate_content_free_tier_requests",
                    "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "37s",
                )
            };
            let service = if vertex {
                "aiplatform.googleapis.com"
            } else {
                "generativelanguage.googleapis.com"
            };
            error_with_details(
                call,
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                &format!(
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: {service}/{metric}, limit: 10, model: {model}\nPlease retry in {delay}."
                ),
                vec![
                    json!({"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":format!("{service}/{metric}"),"quotaId":quota_id,"quotaDimensions":{"location":"global","model":model},"quotaValue":"10"}]}),
                    json!({"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]}),
                    json!({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":delay}),
                ],
                array,
            )
        }
        Fault::ServerError | Fault::StreamError => google_error(
            call,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            if vertex {
                "Internal error encountered."
            } else {
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
            },
            array,
        ),
        Fault::Unavailable | Fault::Overloaded | Fault::CapacityExceeded => google_error(
            call,
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            array,
        ),
        Fault::RequestTooLarge => google_error(
            call,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Request payload size exceeds the limit: 20971520 bytes.",
            array,
        ),
        Fault::ContextTooLong => {
            context_too_long(call, prompt.max(call.flavor().context_window() + 1), array)
        }
        Fault::StreamCut | Fault::MalformedJson => return None,
    };
    Some(resp.into())
}

fn context_too_long(call: &Call, prompt: u64, array: bool) -> Response<EmuBody> {
    google_error(
        call,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        &format!(
            "The input token count ({prompt}) exceeds the maximum number of tokens allowed ({}).",
            call.flavor().context_window()
        ),
        array,
    )
}

struct Generation {
    prompt: u64,
    thoughts: u64,
    pieces: Vec<String>,
    finish: &'static str,
}

impl Generation {
    fn candidates(&self) -> u64 {
        self.pieces.len() as u64
    }
}

fn usage_metadata(call: &Call, g: &Generation, complete: bool) -> Value {
    let vertex = call.flavor() == ProviderFlavor::Vertex;
    let mut usage = Map::new();
    usage.insert("promptTokenCount".into(), json!(g.prompt));
    if complete {
        usage.insert("candidatesTokenCount".into(), json!(g.candidates()));
        usage.insert(
            "totalTokenCount".into(),
            json!(g.prompt + g.candidates() + g.thoughts),
        );
        usage.insert(
            "promptTokensDetails".into(),
            json!([{"modality":"TEXT","tokenCount":g.prompt}]),
        );
        if vertex {
            usage.insert(
                "candidatesTokensDetails".into(),
                json!([{"modality":"TEXT","tokenCount":g.candidates()}]),
            );
        }
        if g.thoughts > 0 {
            usage.insert("thoughtsTokenCount".into(), json!(g.thoughts));
        }
    } else {
        usage.insert("totalTokenCount".into(), json!(g.prompt));
    }
    if vertex {
        usage.insert("trafficType".into(), json!("ON_DEMAND"));
    }
    Value::Object(usage)
}

fn response_object(
    call: &Call,
    model: &str,
    response_id: &str,
    text: &str,
    finish: Option<&str>,
    usage: Value,
) -> Value {
    let vertex = call.flavor() == ProviderFlavor::Vertex;
    let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
        if vertex {
            candidate["avgLogprobs"] = json!(-0.21);
        } else {
            candidate["index"] = json!(0);
        }
    }
    let mut body = json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    });
    if vertex {
        body["createTime"] = json!(rfc3339(unix_secs()));
    }
    body
}

async fn generate(call: &Call, target: &ModelAddress, mode: StreamMode) -> Reply {
    let array = mode == StreamMode::Array;
    let body = match parse(call, array) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let conv = conversation(&body);
    if conv.is_empty() {
        return google_error(
            call,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
            array,
        )
        .into();
    }
    let prompt = conv.prompt_tokens();
    let fault = call.fault();
    if let Some(reply) = fault
        .filter(|f| !(mode == StreamMode::Sse && *f == Fault::StreamError))
        .filter(|f| !(mode == StreamMode::Array && *f == Fault::StreamError))
        .and_then(|f| fault_reply(call, f, &target.model, prompt, array))
    {
        return reply;
    }
    if prompt > call.flavor().context_window() {
        return context_too_long(call, prompt, array).into();
    }
    let config = body
        .get("generationConfig")
        .or_else(|| body.get("generation_config"));
    let max_output = config
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(65_536);
    let sampling = call.sampling();
    let seed = config.and_then(|c| c.get("seed")).and_then(Value::as_u64);
    let temperature = config
        .and_then(|c| c.get("temperature"))
        .and_then(Value::as_f64);
    // Thinking counts against maxOutputTokens on 2.5 models.
    let natural = sampling.answer(&conv, None, seed, temperature);
    let thoughts = thoughts(&target.model, config, natural.tokens()).min(max_output);
    let answer = sampling.answer(&conv, Some(max_output - thoughts), seed, temperature);
    let token_logprobs = sampling.logprobs(&conv.key(), &answer);
    let wants_logprobs = config
        .and_then(|c| c.get("responseLogprobs"))
        .and_then(Value::as_bool)
        == Some(true);
    let top = config
        .and_then(|c| c.get("logprobs"))
        .and_then(Value::as_u64)
        .map_or(0, |n| usize::try_from(n.min(20)).unwrap_or(0));
    let generation = Generation {
        prompt,
        thoughts,
        finish: match answer.finish {
            Finish::Stop => "STOP",
            Finish::Length => "MAX_TOKENS",
        },
        pieces: answer.pieces,
    };
    let response_id = call.id(22);
    if mode != StreamMode::None {
        return stream(call, &target.model, &response_id, &generation, mode, fault);
    }
    if let Err(reply) = call
        .wait_for_answer(generation.candidates() + generation.thoughts)
        .await
    {
        return reply;
    }
    let mut value = response_object(
        call,
        &target.model,
        &response_id,
        &generation.pieces.concat(),
        Some(generation.finish),
        usage_metadata(call, &generation, true),
    );
    if !token_logprobs.is_empty() {
        let mean =
            token_logprobs.iter().map(|t| t.logprob).sum::<f64>() / token_logprobs.len() as f64;
        value["candidates"][0]["avgLogprobs"] = json!(mean);
    }
    if wants_logprobs {
        let chosen: Vec<Value> = token_logprobs
            .iter()
            .map(|t| json!({"token": t.token, "logProbability": t.logprob}))
            .collect();
        let top_candidates: Vec<Value> = token_logprobs
            .iter()
            .map(|t| {
                let candidates: Vec<Value> = std::iter::once(t.clone())
                    .chain(t.alternatives(top.saturating_sub(1)))
                    .take(top)
                    .map(|a| json!({"token": a.token, "logProbability": a.logprob}))
                    .collect();
                json!({"candidates": candidates})
            })
            .collect();
        value["candidates"][0]["logprobsResult"] =
            json!({"topCandidates": top_candidates, "chosenCandidates": chosen});
    }
    let text = value.to_string();
    match fault {
        Some(Fault::StreamCut) => cut_body(call, JSON_TYPE, text.into_bytes()).into(),
        Some(Fault::MalformedJson) => {
            with_body(StatusCode::OK, JSON_TYPE, malformed(text.as_bytes())).into()
        }
        _ => with_body(StatusCode::OK, JSON_TYPE, text).into(),
    }
}

fn stream(
    call: &Call,
    model: &str,
    response_id: &str,
    g: &Generation,
    mode: StreamMode,
    fault: Option<Fault>,
) -> Reply {
    let groups: Vec<&[String]> = g.pieces.chunks(PIECES_PER_CHUNK).collect();
    let count = groups.len().max(1);
    let mut objects: Vec<(u64, Value)> = Vec::with_capacity(count);
    for i in 0..count {
        let group = groups.get(i).copied().unwrap_or(&[]);
        let last = i + 1 == count;
        let usage = usage_metadata(call, g, last);
        let tokens = group.len() as u64 + if i == 0 { g.thoughts } else { 0 };
        objects.push((
            tokens,
            response_object(
                call,
                model,
                response_id,
                &group.concat(),
                last.then_some(g.finish),
                usage,
            ),
        ));
    }
    let frame = |i: usize, value: &Value| -> Bytes {
        match mode {
            StreamMode::Sse => Bytes::from(format!("data: {value}\r\n\r\n")),
            _ => Bytes::from(if i == 0 {
                format!("[{value}")
            } else {
                format!(",\r\n{value}")
            }),
        }
    };
    let mut chunks: Vec<(u64, Bytes)> = objects
        .iter()
        .enumerate()
        .map(|(i, (t, v))| (*t, frame(i, v)))
        .collect();
    let error_value = json!({"error": {"code": 500, "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", "status": "INTERNAL"}});
    let mut script: Script;
    match fault {
        Some(Fault::StreamError) => {
            let keep = (chunks.len() / 2).max(1);
            chunks.truncate(keep);
            chunks.push((0, frame(keep, &error_value)));
            if mode == StreamMode::Array {
                chunks.push((0, Bytes::from_static(b"]")));
            }
            script = call.script(chunks);
        }
        Some(Fault::MalformedJson) => {
            let mid = chunks.len() / 2;
            if let Some(chunk) = chunks.get_mut(mid) {
                let original = objects
                    .get(mid)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                let broken = malformed(original.as_bytes());
                chunk.1 = match mode {
                    StreamMode::Sse => Bytes::from(format!(
                        "data: {}\r\n\r\n",
                        String::from_utf8_lossy(&broken)
                    )),
                    _ => Bytes::from(broken),
                };
            }
            if mode == StreamMode::Array {
                chunks.push((0, Bytes::from_static(b"]")));
            }
            script = call.script(chunks);
        }
        _ => {
            if mode == StreamMode::Array {
                chunks.push((0, Bytes::from_static(b"]")));
            }
            script = call.script(chunks);
            if fault == Some(Fault::StreamCut) {
                script = script.cut_midway();
            }
        }
    }
    let content_type = if mode == StreamMode::Sse {
        SSE_TYPE
    } else {
        JSON_TYPE
    };
    let mut resp = streaming(content_type, call.stream(script));
    set_header(&mut resp, "vary", "Origin, X-Origin, Referer");
    resp.into()
}

fn count_tokens(call: &Call) -> Reply {
    let body = match parse(call, false) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    // Gemini wraps the request as {"generateContentRequest": {...}} or sends contents directly.
    let inner = body
        .get("generateContentRequest")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or(body);
    let conv = conversation(&inner);
    let tokens = conv.prompt_tokens();
    let chars: usize = conv
        .messages
        .iter()
        .map(|(_, t)| t.chars().filter(|c| !c.is_whitespace()).count())
        .sum();
    let mut value = json!({"totalTokens": tokens, "promptTokensDetails": [{"modality":"TEXT","tokenCount":tokens}]});
    if call.flavor() == ProviderFlavor::Vertex {
        value["totalBillableCharacters"] = json!(chars);
    }
    json_response(StatusCode::OK, &value).into()
}

fn default_dimensions(call: &Call, model: &str) -> usize {
    if model.contains("gemini-embedding") {
        3072
    } else if model.contains("text-embedding") || model.contains("multilingual-embedding") {
        768
    } else {
        call.shared.config.embedding_dimensions
    }
}

fn dims_from(value: Option<&Value>) -> Option<usize> {
    value
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| *d > 0)
}

async fn embedding_fault(call: &Call, model: &str, tokens: u64) -> Option<Reply> {
    let fault = call.fault()?;
    if let Some(reply) = fault_reply(call, fault, model, tokens, false) {
        return Some(reply);
    }
    None
}

async fn embed_content(call: &Call, target: &ModelAddress) -> Reply {
    let body = match parse(call, false) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let text = content_text(
        body.get("content")
            .and_then(|c| c.get("parts"))
            .unwrap_or(&Value::Null),
    );
    let tokens = estimate_tokens(&text).max(1);
    if let Some(reply) = embedding_fault(call, &target.model, tokens).await {
        return reply;
    }
    let config = body.get("embedContentConfig");
    let dims = dims_from(config.and_then(|c| c.get("outputDimensionality")))
        .or_else(|| dims_from(body.get("outputDimensionality")))
        .unwrap_or_else(|| default_dimensions(call, &target.model));
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    let value = if call.flavor() == ProviderFlavor::Vertex {
        json!({"embedding": {"values": embed(&text, dims)}, "usageMetadata": {"promptTokenCount": tokens}, "truncated": false})
    } else {
        json!({"embedding": {"values": embed(&text, dims)}})
    };
    json_response(StatusCode::OK, &value).into()
}

async fn batch_embed(call: &Call) -> Reply {
    let body = match parse(call, false) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tokens: u64 = requests
        .iter()
        .map(|r| {
            estimate_tokens(&content_text(
                r.get("content")
                    .and_then(|c| c.get("parts"))
                    .unwrap_or(&Value::Null),
            ))
        })
        .sum();
    if let Some(reply) = embedding_fault(call, "gemini-embedding-001", tokens).await {
        return reply;
    }
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text = content_text(
                r.get("content")
                    .and_then(|c| c.get("parts"))
                    .unwrap_or(&Value::Null),
            );
            let model = r
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("models/gemini-embedding-001");
            let dims = dims_from(r.get("outputDimensionality"))
                .unwrap_or_else(|| default_dimensions(call, model));
            json!({"values": embed(&text, dims)})
        })
        .collect();
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    json_response(StatusCode::OK, &json!({"embeddings": embeddings})).into()
}

async fn predict(call: &Call, target: &ModelAddress) -> Reply {
    let body = match parse(call, false) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let instances = body
        .get("instances")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let texts: Vec<String> = instances
        .iter()
        .map(|i| {
            i.get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| estimate_tokens(t)).sum();
    if let Some(reply) = embedding_fault(call, &target.model, tokens).await {
        return reply;
    }
    let dims = dims_from(
        body.get("parameters")
            .and_then(|p| p.get("outputDimensionality")),
    )
    .unwrap_or_else(|| default_dimensions(call, &target.model));
    let predictions: Vec<Value> = texts
        .iter()
        .map(|t| {
            json!({"embeddings": {"statistics": {"truncated": false, "token_count": estimate_tokens(t)}, "values": embed(t, dims)}})
        })
        .collect();
    let billable: usize = texts
        .iter()
        .map(|t| t.chars().filter(|c| !c.is_whitespace()).count())
        .sum();
    if let Err(reply) = call.wait_for_answer(0).await {
        return reply;
    }
    json_response(
        StatusCode::OK,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": billable}}),
    )
    .into()
}

fn gemini_models(call: &Call) -> Reply {
    let models: Vec<Value> = call
        .shared
        .config
        .models
        .iter()
        .map(|m| {
            let methods = if m.contains("embedding") {
                json!(["embedContent", "batchEmbedContents", "countTextTokens"])
            } else {
                json!(["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"])
            };
            json!({"name": format!("models/{m}"), "version": "001", "displayName": m, "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536, "supportedGenerationMethods": methods})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"models": models})).into()
}
