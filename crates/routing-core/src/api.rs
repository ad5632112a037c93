//! Wire types of the fleet: the router's native request and response, and
//! the bodies the functions exchange through the gateway.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::chat::{FinishReason, GenerationOptions, Message, Role, Usage};
use crate::task::{Difficulty, Task};

/// Budget assumed when the caller declares none.
pub const DEFAULT_MAX_LATENCY_MS: u64 = 30_000;
/// The largest budget accepted (the gateway's own upstream timeout is lower).
pub const MAX_LATENCY_MS_LIMIT: u64 = 600_000;
/// The most texts one embeddings request may carry.
pub const MAX_EMBED_INPUTS: usize = 2048;

/// A request to the llm-router function, as the caller sends it.
///
/// `Default` is the empty request (every field absent), from which other
/// front ends (the OpenAI-compatible surface) build theirs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// What to do; when absent the classify function decides.
    #[serde(default)]
    pub task: Option<Task>,
    /// A single user prompt (shorthand for one user message).
    #[serde(default)]
    pub prompt: Option<String>,
    /// A conversation, instead of `prompt`.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Texts to embed (`task: embed`): a string or an array of strings.
    #[serde(default, deserialize_with = "one_or_many")]
    pub input: Option<Vec<String>>,
    /// The caller's end-to-end latency budget.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
    /// When true the request never leaves the cluster.
    #[serde(default)]
    pub private: bool,
    /// Upper bound on generated tokens.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Tenant or workflow tag, for metering and budgets.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The most the caller will pay for this request, in USD.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Quality floor in `[0, 1]`: models expected below it are not chosen.
    #[serde(default)]
    pub quality: Option<f32>,
    /// A catalogue model id (`provider/model`) to pin; `auto` or absent routes.
    #[serde(default)]
    pub model: Option<String>,
    /// The caller's own judgement of difficulty; skips classification.
    #[serde(default)]
    pub difficulty: Option<Difficulty>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Further sampling settings; set by the OpenAI-compatible API, not
    /// part of the native request body.
    #[serde(skip)]
    pub options: GenerationOptions,
}

/// What a valid request asks for, after defaults and checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    /// The declared task, if any.
    pub task: Option<Task>,
    /// The conversation (empty for pure embeddings requests).
    pub messages: Vec<Message>,
    /// Texts to embed (empty unless embedding).
    pub inputs: Vec<String>,
    /// Latency budget in milliseconds.
    pub max_latency_ms: u64,
    /// Keep the request in the cluster.
    pub private: bool,
    /// Upper bound on generated tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Tenant tag.
    pub tenant: Option<String>,
    /// Cost cap in USD.
    pub max_cost_usd: Option<f64>,
    /// Quality floor.
    pub quality: Option<f32>,
    /// Pinned catalogue model.
    pub pinned: Option<String>,
    /// Declared difficulty.
    pub difficulty: Option<Difficulty>,
    /// Stream the answer.
    pub stream: bool,
    /// Further sampling settings and the end-user id.
    pub options: GenerationOptions,
}

impl ValidRequest {
    /// The text a classifier should look at: the last user message, or the
    /// first input to embed.
    pub fn classification_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .or_else(|| self.inputs.first().map(String::as_str))
            .unwrap_or("")
    }
}

/// Why a request was rejected: a message and, where one is to blame, the
/// field (`param`, as OpenAI-style errors name it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    /// The offending field, e.g. `task` or `messages[0].role`.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl InvalidRequest {
    fn field(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }
}

/// Parses a JSON body of type `T`, reporting the path of the field at fault.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, InvalidRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidRequest {
            param: None,
            message: "request body is empty; expected a JSON object".to_owned(),
        });
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(InvalidRequest {
            param: None,
            message: "request body must be a JSON object".to_owned(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            // Broken JSON is nobody's field.
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                InvalidRequest {
                    param: None,
                    message: format!("invalid JSON: {message}"),
                }
            }
            _ => InvalidRequest {
                param: if path != "." && !path.is_empty() {
                    Some(path)
                } else {
                    unknown_field_name(&message)
                },
                message,
            },
        }
    })?;
    // One JSON document, nothing after it but whitespace: a proxy or a
    // client that appends bytes must not have them silently dropped.
    de.end().map_err(|e| InvalidRequest {
        param: None,
        message: format!("invalid JSON: unexpected bytes after the JSON body ({e})"),
    })?;
    Ok(value)
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}

/// Deserializes a string or an array of strings (`null` counts as absent),
/// for `#[serde(deserialize_with = ...)]` on OpenAI-style `input` fields.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct OneOrMany;
    impl<'de> de::Visitor<'de> for OneOrMany {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec![v.to_owned()]))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(OneOrMany)
}

impl RouteRequest {
    /// Parses and validates a router request body.
    pub fn parse(body: &[u8]) -> Result<ValidRequest, InvalidRequest> {
        parse_json::<RouteRequest>(body)?.validate()
    }

    /// Applies defaults and checks every field.
    pub fn validate(self) -> Result<ValidRequest, InvalidRequest> {
        let max_latency_ms = self.check_limits()?;
        let messages = request_messages(self.prompt, self.messages)?;
        let inputs = embed_inputs(self.input)?;
        let task = self.task;
        check_content_for_task(task, &messages, &inputs)?;
        Ok(ValidRequest {
            task,
            messages,
            inputs,
            max_latency_ms,
            private: self.private,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            stop: self.stop,
            tenant: self.tenant,
            max_cost_usd: self.max_cost_usd,
            quality: self.quality,
            pinned: self.model.filter(|m| m != "auto"),
            difficulty: self.difficulty,
            stream: self.stream,
            options: self.options,
        })
    }

    /// The scalar limits and options; the latency budget, defaulted.
    fn check_limits(&self) -> Result<u64, InvalidRequest> {
        let max_latency_ms = self.max_latency_ms.unwrap_or(DEFAULT_MAX_LATENCY_MS);
        if max_latency_ms == 0 || max_latency_ms > MAX_LATENCY_MS_LIMIT {
            return Err(InvalidRequest::field(
                "max_latency_ms",
                format!("max_latency_ms must be between 1 and {MAX_LATENCY_MS_LIMIT}"),
            ));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(InvalidRequest::field(
                    "temperature",
                    "temperature must be between 0 and 2",
                ));
            }
        }
        check_options(&self.options)?;
        if self
            .max_cost_usd
            .is_some_and(|c| !c.is_finite() || c <= 0.0)
        {
            return Err(InvalidRequest::field(
                "max_cost_usd",
                "max_cost_usd must be a positive number",
            ));
        }
        if self.quality.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
            return Err(InvalidRequest::field(
                "quality",
                "quality must be between 0 and 1",
            ));
        }
        if self.tenant.as_deref().is_some_and(|t| !valid_tenant(t)) {
            return Err(InvalidRequest::field(
                "tenant",
                "tenant must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        if self.stream && self.task == Some(Task::Embed) {
            return Err(InvalidRequest::field(
                "stream",
                "embeddings are not streamed",
            ));
        }
        if self.max_tokens == Some(0) {
            return Err(InvalidRequest::field(
                "max_tokens",
                "max_tokens must be at least 1",
            ));
        }
        Ok(max_latency_ms)
    }
}

/// The longest end-user id passed on (Anthropic's `metadata.user_id` limit).
pub const MAX_USER_CHARS: usize = 256;

/// The ranges OpenAI accepts for the further sampling settings.
fn check_options(options: &GenerationOptions) -> Result<(), InvalidRequest> {
    if options.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(InvalidRequest::field(
            "top_p",
            "top_p must be between 0 and 1",
        ));
    }
    for (name, value) in [
        ("presence_penalty", options.presence_penalty),
        ("frequency_penalty", options.frequency_penalty),
    ] {
        if value.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(InvalidRequest::field(
                name,
                format!("{name} must be between -2 and 2"),
            ));
        }
    }
    if options
        .user
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.chars().count() > MAX_USER_CHARS)
    {
        return Err(InvalidRequest::field(
            "user",
            format!("user must be 1 to {MAX_USER_CHARS} characters"),
        ));
    }
    Ok(())
}

/// 1 to 64 characters of ASCII letters, digits, `-`, `_` or `.`.
fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The conversation: `prompt` as one user message, or `messages`; none of
/// them empty.
fn request_messages(
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
) -> Result<Vec<Message>, InvalidRequest> {
    let messages = match (prompt, messages) {
        (Some(_), Some(_)) => {
            return Err(InvalidRequest::field(
                "prompt",
                "send either prompt or messages, not both",
            ));
        }
        (Some(prompt), None) => vec![Message::user(prompt)],
        (None, Some(messages)) => messages,
        (None, None) => Vec::new(),
    };
    for (i, m) in messages.iter().enumerate() {
        if m.content.trim().is_empty() {
            let param = if messages.len() == 1 && i == 0 {
                "prompt".to_owned()
            } else {
                format!("messages[{i}].content")
            };
            return Err(InvalidRequest::field(&param, "content must not be empty"));
        }
    }
    Ok(messages)
}

/// The texts to embed: at most [`MAX_EMBED_INPUTS`], none empty.
fn embed_inputs(input: Option<Vec<String>>) -> Result<Vec<String>, InvalidRequest> {
    let inputs = input.unwrap_or_default();
    if inputs.len() > MAX_EMBED_INPUTS {
        return Err(InvalidRequest::field(
            "input",
            format!("at most {MAX_EMBED_INPUTS} inputs per request"),
        ));
    }
    if inputs.iter().any(|s| s.is_empty()) {
        return Err(InvalidRequest::field(
            "input",
            "inputs must not be empty strings",
        ));
    }
    Ok(inputs)
}

/// Embeddings need texts; every other task a conversation with a user
/// message and no `input`.
fn check_content_for_task(
    task: Option<Task>,
    messages: &[Message],
    inputs: &[String],
) -> Result<(), InvalidRequest> {
    if task == Some(Task::Embed) {
        if inputs.is_empty() && messages.is_empty() {
            return Err(InvalidRequest::field(
                "input",
                "task embed needs input (a string or an array of strings) or prompt",
            ));
        }
        return Ok(());
    }
    if !inputs.is_empty() {
        return Err(InvalidRequest::field(
            "input",
            "input is only for task embed; send prompt or messages",
        ));
    }
    if messages.is_empty() {
        return Err(InvalidRequest::field(
            "prompt",
            "a prompt or messages is required",
        ));
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(InvalidRequest::field(
            "messages",
            "messages must contain at least one user message",
        ));
    }
    Ok(())
}

/// The routing decision as the caller sees it: the rule, why, the model
/// chosen, the models left out and why, and what was tried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteExplanation {
    /// Short rule id, e.g. `private_local`.
    pub rule: String,
    /// Human-readable reason.
    pub reason: String,
    /// The catalogue id of the model chosen first, e.g. `groq/llama-3.1-8b-instant`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The fallback chain, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Models left out, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<serde_json::Value>,
    /// No model met the latency budget: the route is best effort.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latency_relaxed: bool,
    /// The budget gate applied, when the tenant is near or over a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<serde_json::Value>,
    /// The calls made, in order, with their outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Set when the cheap model's answer failed its check and a stronger
    /// model answered instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated: Option<Escalated>,
    /// The classifier's probability that the prompt needs the strong model,
    /// the score its difficulty tier was cut from; absent when the caller
    /// declared the difficulty or no trained model answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_strong: Option<f32>,
    /// The cut-offs the difficulty tier was read from `needs_strong` with,
    /// and where they came from; absent when no score was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationExplanation>,
    /// The quality predicted for each model of the chain (primary first),
    /// and whether it is the static prior or learned from feedback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicted_quality: Vec<PredictedQuality>,
    /// Whether this call explored: its primary is not the top-ranked
    /// candidate but one the router wants to learn more about.
    #[serde(default)]
    pub explored: bool,
    /// The cascade's judgement of the cheap answer, when the rule escalates
    /// and `[cascade]` is on for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeExplanation>,
}

/// How sure the cascade was of the cheap model's answer, and what it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CascadeExplanation {
    /// The combined confidence in `[0, 1]`; absent when no signal could be
    /// read (the answer is then kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Each signal's value: `logprobs` (the geometric mean of the tokens'
    /// probabilities), `agreement` (how alike the cheap samples are).
    pub signals: CascadeSignals,
    /// Answers with a confidence below this are escalated; `null`: every
    /// answer is (a target share of 1).
    pub threshold: Option<f64>,
    /// The share of judged answers the policy wants escalated.
    pub target_escalation_share: f64,
    /// Where the threshold comes from: `window`, `cold_start` or `static`.
    pub source: String,
    /// The confidence window: `global` or `rule:NAME`.
    pub window: String,
    /// Confidences in that window at its last merge.
    pub n: u64,
    /// Whether the answer was escalated for low confidence.
    pub escalated: bool,
    /// Calls to the cheap model (the answer and its extra samples).
    pub cheap_calls: u32,
    /// What the cheap calls cost, summed (part of the answer's `cost_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheap_cost_usd: Option<f64>,
    /// Time spent on the cheap calls, in milliseconds.
    pub cheap_latency_ms: u64,
    /// The call to the judge model, when the `judge` signal is read (not
    /// among `attempts`, which are the calls that could answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Attempt>,
    /// What judging cost (part of the answer's `cost_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_cost_usd: Option<f64>,
}

/// The cascade's signals; each absent when not configured or unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CascadeSignals {
    /// `exp(mean token log-probability)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<f64>,
    /// The similarity of the cheap samples' normalised answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// The in-cluster judge model's probability that the answer is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<f64>,
}

/// Where a predicted quality comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualitySource {
    /// The policy's static per-tier quality.
    #[default]
    Prior,
    /// Learned from feedback (the prior blended with observed rewards).
    Learned,
}

/// One candidate's predicted quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedQuality {
    /// Catalogue model id.
    pub model: String,
    /// Predicted quality in `[0, 1]`.
    pub quality: f32,
    /// `prior` or `learned`.
    pub source: QualitySource,
    /// Feedback observations of this model in this request's context.
    pub observations: u64,
}

/// Thumbs up or down on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thumbs {
    /// A good answer (reward 1).
    Up,
    /// A bad answer (reward 0).
    Down,
}

/// `POST /feedback` as the caller sends it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The routed call's id (`X-Call-Id`, or `id` of the answer).
    #[serde(default)]
    pub call_id: String,
    /// How good the answer was, in `[0, 1]`.
    #[serde(default)]
    pub score: Option<f64>,
    /// Thumbs up or down, instead of `score`.
    #[serde(default)]
    pub thumbs: Option<Thumbs>,
    /// The catalogue id of the model the caller would have preferred.
    #[serde(default)]
    pub preferred_model: Option<String>,
    /// The tenant the call was made for; must match the call's.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A checked feedback request.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidFeedback {
    /// The routed call's id.
    pub call_id: String,
    /// The reward in `[0, 1]` (thumbs up 1, down 0).
    pub reward: f64,
    /// The catalogue id the caller would have preferred (not yet checked
    /// against the catalogue).
    pub preferred_model: Option<String>,
    /// The tenant the feedback speaks for.
    pub tenant: Option<String>,
}

impl FeedbackRequest {
    /// Parses and checks a feedback body: exactly one of `score` (in
    /// `[0, 1]`) and `thumbs`, a non-empty `call_id`; unknown fields are
    /// refused, naming the field.
    pub fn parse(body: &[u8]) -> Result<ValidFeedback, InvalidRequest> {
        parse_json::<FeedbackRequest>(body)?.validate()
    }

    /// Checks every field.
    pub fn validate(self) -> Result<ValidFeedback, InvalidRequest> {
        let invalid = |param: &str, message: String| InvalidRequest {
            param: Some(param.to_owned()),
            message,
        };
        if self.call_id.trim().is_empty() {
            return Err(invalid(
                "call_id",
                "call_id is required: the routed call's X-Call-Id".to_owned(),
            ));
        }
        let reward = match (self.score, self.thumbs) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "score",
                    "give either score or thumbs, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "score",
                    "one of score (0..1) or thumbs (up/down) is required".to_owned(),
                ));
            }
            (Some(score), None) => {
                if !(score.is_finite() && (0.0..=1.0).contains(&score)) {
                    return Err(invalid(
                        "score",
                        format!("score must be between 0 and 1, not {score}"),
                    ));
                }
                score
            }
            (None, Some(Thumbs::Up)) => 1.0,
            (None, Some(Thumbs::Down)) => 0.0,
        };
        if self
            .preferred_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return Err(invalid(
                "preferred_model",
                "preferred_model is empty".to_owned(),
            ));
        }
        if self.tenant.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid("tenant", "tenant is empty".to_owned()));
        }
        Ok(ValidFeedback {
            call_id: self.call_id,
            reward,
            preferred_model: self.preferred_model,
            tenant: self.tenant,
        })
    }
}

/// The operating point a request's difficulty tier was cut at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationExplanation {
    /// The window the thresholds come from: `global`, `rule:NAME` or
    /// `tenant:NAME`.
    pub window: String,
    /// Scores in that window at its last merge.
    pub n: u64,
    /// The share of traffic the policy asks for per tier.
    pub target_share: TierShares,
    /// The needs-strong cut-offs in force.
    pub thresholds: TierThresholds,
    /// `window` (the window's quantiles), `cold_start` (static cut-offs
    /// until the window holds enough scores) or `static` (calibration
    /// disabled).
    pub source: String,
    /// The score compared with the thresholds: with `window`, the
    /// needs-strong score spread over its rounding interval; otherwise the
    /// score as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A share of traffic per tier above simple.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TierShares {
    /// Share rated medium.
    pub medium: f64,
    /// Share rated hard.
    pub hard: f64,
}

/// Needs-strong cut-offs per tier; `null` when no score reaches the tier
/// (its target share is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TierThresholds {
    /// From this score on a prompt is at least medium.
    pub medium: Option<f64>,
    /// From this score on a prompt is hard.
    pub hard: Option<f64>,
}

/// One call made for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Catalogue model id.
    pub model: String,
    /// `ok`, or the error type.
    pub outcome: String,
    /// Time the call took, in milliseconds.
    pub latency_ms: u64,
}

/// A cheap-first escalation that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalated {
    /// The model whose answer failed the check.
    pub from: String,
    /// Why it failed.
    pub reason: String,
}

/// The router's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteResponse {
    /// The call id (`X-Call-Id`).
    pub id: String,
    /// The task served.
    pub task: Task,
    /// Difficulty, when classify was consulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    /// Provider that served it, e.g. `groq`.
    pub provider: String,
    /// Model that served it.
    pub model: String,
    /// Generated text (all tasks but embed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Vectors (task embed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Provider-reported usage.
    pub usage: Usage,
    /// Cost in USD from the catalogue; `null` when the model has no price.
    pub cost_usd: Option<f64>,
    /// Time spent in the router, in milliseconds.
    pub latency_ms: u64,
    /// The routing decision.
    pub route: RouteExplanation,
}

/// What llm-router asks provider-proxy to do.
///
/// Like every body exchanged between the fleet's functions, unknown fields
/// are ignored, so that a router a release ahead can add one during a
/// rolling deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRequest {
    /// Configured provider name, e.g. `groq`.
    pub provider: String,
    /// The provider's model id.
    pub model: String,
    /// The task, for metering.
    pub task: Task,
    /// A private request may only reach in-cluster providers.
    #[serde(default)]
    pub private: bool,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Ask for the answer's token log-probabilities (where the provider
    /// returns them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    /// Time left for the provider call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// For a stream: time allowed for it to start (the provider's first
    /// answer), in milliseconds, so that a hung provider leaves the rest of
    /// `timeout_ms` to the next model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout_ms: Option<u64>,
    /// Answer as server-sent [`ProxyStreamEvent`]s instead of one JSON body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Further sampling settings and the end-user id.
    #[serde(default, flatten)]
    pub options: GenerationOptions,
}

/// One server-sent event (`data: <json>`) of a streamed provider-proxy answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProxyStreamEvent {
    /// More generated text.
    Delta {
        /// The new text.
        text: String,
    },
    /// The last event of a successful stream.
    Done {
        /// Provider name.
        provider: String,
        /// The model id requested.
        model: String,
        /// Why generation stopped.
        finish_reason: FinishReason,
        /// Usage the provider reported in the stream.
        usage: Usage,
        /// Cost in USD, or `null` when the model has no price.
        cost_usd: Option<f64>,
        /// Time spent on the stream, in milliseconds.
        latency_ms: u64,
    },
    /// The stream failed after it started; nothing follows.
    Error {
        /// What went wrong.
        error: ErrorDetail,
    },
}

impl ProxyStreamEvent {
    /// The event as an SSE frame: `data: <json>` and a blank line.
    pub fn to_sse(&self) -> bytes::Bytes {
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","error":{{"message":"{e}","type":"internal_error","param":null,"code":null}}}}"#)
        });
        bytes::Bytes::from(format!("data: {json}\n\n"))
    }
}

/// provider-proxy's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyResponse {
    /// Provider name.
    pub provider: String,
    /// The model id requested (the catalogue key).
    pub model: String,
    /// The model id the provider reported.
    pub served_model: String,
    /// Generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Provider-reported usage.
    pub usage: Usage,
    /// Cost in USD, or `null` when the model has no price.
    pub cost_usd: Option<f64>,
    /// Time spent calling the provider, in milliseconds.
    pub latency_ms: u64,
    /// The answer's token log-probabilities, when asked for and returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<crate::chat::Logprobs>,
}

/// A request to the embed function (unknown fields are ignored, see
/// [`ProxyRequest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedFunctionRequest {
    /// Texts to embed: a string or an array of strings.
    #[serde(deserialize_with = "one_or_many")]
    pub input: Option<Vec<String>>,
}

/// The embed function's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedFunctionResponse {
    /// Backend that computed the vectors (`ollama`, or `local` in-process).
    pub provider: String,
    /// Model id.
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Token usage as the backend reported it.
    pub usage: Usage,
}

/// A request to the classify function (unknown fields are ignored, see
/// [`ProxyRequest`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyRequest {
    /// The text to classify.
    pub text: String,
}

/// The classify function's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyResponse {
    /// The task the text most likely asks for.
    pub task: Task,
    /// How hard it looks.
    pub difficulty: Difficulty,
    /// Confidence in `[0, 1]`; low means ambiguous.
    pub confidence: f32,
    /// Probability in `[0, 1]` that `task` is right, when a trained model answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_confidence: Option<f32>,
    /// The expected quality gain in `[0, 1]` of the strong tier over the weak
    /// one for this prompt (on exam questions: the probability that a weak
    /// model gets it wrong and a strong one right), when a trained model
    /// answered. Unrounded; rank it, or cut it at quantiles of recent scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_strong: Option<f32>,
    /// The weak tier's predicted quality in `[0, 1]` for this prompt, when
    /// the model predicts per-tier quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_weak: Option<f32>,
    /// The strong tier's predicted quality in `[0, 1]` for this prompt, when
    /// the model predicts per-tier quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_strong: Option<f32>,
    /// What answered: `model:<id>` or `heuristic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The JSON error body every function answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The fields of an error body (OpenAI's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The field at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
    /// Why the call failed, as a class the resilience layer acts on (set by
    /// provider-proxy on every error it answers with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<crate::failure::Failure>,
}

impl ErrorDetail {
    /// An error of class `kind` that blames no field.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: kind.into(),
            param: None,
            code: None,
            failure: None,
        }
    }
}

impl From<&InvalidRequest> for ErrorDetail {
    /// An `invalid_request_error` naming the field at fault.
    fn from(e: &InvalidRequest) -> Self {
        Self {
            param: e.param.clone(),
            ..Self::new("invalid_request_error", e.message.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ValidRequest, InvalidRequest> {
        RouteRequest::parse(json.as_bytes())
    }

    #[test]
    fn a_minimal_prompt_gets_defaults() {
        let req = parse(r#"{"task":"generate","prompt":"hi","max_latency_ms":200}"#).unwrap();
        assert_eq!(req.task, Some(Task::Generate));
        assert_eq!(req.messages, vec![Message::user("hi")]);
        assert_eq!(req.max_latency_ms, 200);
        assert!(!req.private);
        let req = parse(r#"{"prompt":"hi"}"#).unwrap();
        assert_eq!(req.task, None);
        assert_eq!(req.max_latency_ms, DEFAULT_MAX_LATENCY_MS);
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases = [
            (r#"{"task":"summarise","prompt":"hi"}"#, "task"),
            (
                r#"{"task":"generate","prompt":"hi","max_latency_ms":"fast"}"#,
                "max_latency_ms",
            ),
            (
                r#"{"task":"generate","prompt":"hi","max_latency_ms":0}"#,
                "max_latency_ms",
            ),
            (
                r#"{"task":"generate","prompt":"hi","privat":true}"#,
                "privat",
            ),
            (
                r#"{"task":"generate","prompt":"hi","private":"yes"}"#,
                "private",
            ),
            (r#"{"task":"generate"}"#, "prompt"),
            (r#"{"task":"generate","prompt":"  "}"#, "prompt"),
            (
                r#"{"task":"generate","prompt":"a","messages":[]}"#,
                "prompt",
            ),
            (
                r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"messages":[{"role":"system","content":"x"}]}"#,
                "messages",
            ),
            (
                r#"{"task":"generate","prompt":"hi","temperature":3}"#,
                "temperature",
            ),
            (r#"{"task":"embed"}"#, "input"),
            (r#"{"task":"embed","input":[1,2]}"#, "input[0]"),
            (r#"{"task":"generate","prompt":"hi","input":"x"}"#, "input"),
            (
                r#"{"task":"generate","prompt":"hi","max_cost_usd":0}"#,
                "max_cost_usd",
            ),
            (
                r#"{"task":"generate","prompt":"hi","quality":1.5}"#,
                "quality",
            ),
            (
                r#"{"task":"generate","prompt":"hi","tenant":"a b"}"#,
                "tenant",
            ),
            (
                r#"{"task":"generate","prompt":"hi","difficulty":"easy"}"#,
                "difficulty",
            ),
            (r#"{"task":"embed","input":"x","stream":true}"#, "stream"),
        ];
        for (body, field) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field), "{body}: {err:?}");
        }
    }

    #[test]
    fn broken_json_is_reported_as_such() {
        let err = parse(r#"{"task":"generate","prompt":"#).unwrap_err();
        assert!(err.message.starts_with("invalid JSON"), "{}", err.message);
        assert_eq!(err.param, None);
        let err = parse("").unwrap_err();
        assert!(err.message.contains("empty"));
        let err = parse("[1]").unwrap_err();
        assert_eq!(err.param, None);
        assert!(err.message.contains("JSON object"));
    }

    #[test]
    fn embed_input_may_be_one_string_or_many() {
        let one = parse(r#"{"task":"embed","input":"a"}"#).unwrap();
        assert_eq!(one.inputs, vec!["a"]);
        let many = parse(r#"{"task":"embed","input":["a","b"]}"#).unwrap();
        assert_eq!(many.inputs, vec!["a", "b"]);
        assert_eq!(many.classification_text(), "a");
    }

    /// `value` with a field no release knows, as a newer sender might add.
    fn with_unknown_field(mut value: serde_json::Value) -> Vec<u8> {
        value["added_in_a_later_release"] = serde_json::json!({"any": ["shape"]});
        value.to_string().into_bytes()
    }

    fn round_trips_with_an_unknown_field<T>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let body = with_unknown_field(serde_json::to_value(value).unwrap());
        let parsed: T = parse_json(&body).unwrap();
        assert_eq!(&parsed, value);
    }

    #[test]
    fn a_proxy_request_ignores_unknown_fields() {
        round_trips_with_an_unknown_field(&ProxyRequest {
            provider: "groq".to_owned(),
            model: "llama".to_owned(),
            task: Task::Generate,
            private: true,
            messages: vec![Message::user("hi")],
            max_tokens: Some(5),
            temperature: Some(0.5),
            stop: vec!["END".to_owned()],
            timeout_ms: Some(900),
            start_timeout_ms: None,
            stream: true,
            options: GenerationOptions {
                top_p: Some(0.9),
                seed: Some(-7),
                presence_penalty: Some(0.5),
                frequency_penalty: Some(-0.5),
                user: Some("u-1".to_owned()),
            },
            logprobs: true,
        });
    }

    #[test]
    fn sampling_settings_out_of_range_name_the_field() {
        for (options, field) in [
            (
                GenerationOptions {
                    top_p: Some(1.5),
                    ..GenerationOptions::default()
                },
                "top_p",
            ),
            (
                GenerationOptions {
                    presence_penalty: Some(-2.5),
                    ..GenerationOptions::default()
                },
                "presence_penalty",
            ),
            (
                GenerationOptions {
                    frequency_penalty: Some(2.5),
                    ..GenerationOptions::default()
                },
                "frequency_penalty",
            ),
            (
                GenerationOptions {
                    user: Some(String::new()),
                    ..GenerationOptions::default()
                },
                "user",
            ),
        ] {
            let request = RouteRequest {
                prompt: Some("hi".to_owned()),
                options,
                ..RouteRequest::default()
            };
            assert_eq!(
                request.validate().unwrap_err().param.as_deref(),
                Some(field)
            );
        }
    }

    #[test]
    fn a_proxy_response_ignores_unknown_fields() {
        round_trips_with_an_unknown_field(&ProxyResponse {
            provider: "groq".to_owned(),
            model: "llama".to_owned(),
            served_model: "llama-3".to_owned(),
            text: "hello".to_owned(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost_usd: Some(0.001),
            latency_ms: 12,
            logprobs: crate::chat::Logprobs::from_tokens(vec![-0.1, -0.3]),
        });
    }

    #[test]
    fn proxy_stream_events_ignore_unknown_fields() {
        round_trips_with_an_unknown_field(&ProxyStreamEvent::Delta {
            text: "he".to_owned(),
        });
        round_trips_with_an_unknown_field(&ProxyStreamEvent::Done {
            provider: "groq".to_owned(),
            model: "llama".to_owned(),
            finish_reason: FinishReason::Length,
            usage: Usage::default(),
            cost_usd: None,
            latency_ms: 3,
        });
        round_trips_with_an_unknown_field(&ProxyStreamEvent::Error {
            error: ErrorDetail {
                message: "boom".to_owned(),
                kind: "upstream_error".to_owned(),
                param: None,
                code: None,
                failure: None,
            },
        });
    }

    #[test]
    fn an_embed_request_and_its_answer_ignore_unknown_fields() {
        round_trips_with_an_unknown_field(&EmbedFunctionRequest {
            input: Some(vec!["a".to_owned(), "b".to_owned()]),
        });
        round_trips_with_an_unknown_field(&EmbedFunctionResponse {
            provider: "local".to_owned(),
            model: "minilm".to_owned(),
            embeddings: vec![vec![0.5, -0.25]],
            usage: Usage::default(),
        });
    }

    #[test]
    fn a_classify_request_and_its_answer_ignore_unknown_fields() {
        round_trips_with_an_unknown_field(&ClassifyRequest {
            text: "hi".to_owned(),
        });
        round_trips_with_an_unknown_field(&ClassifyResponse {
            task: Task::Reason,
            difficulty: Difficulty::Hard,
            confidence: 0.75,
            task_confidence: Some(0.5),
            needs_strong: Some(0.25),
            method: Some("heuristic".to_owned()),
            quality_weak: Some(0.5),
            quality_strong: Some(0.75),
        });
    }

    #[test]
    fn bytes_after_the_json_body_are_refused() {
        for body in [
            &br#"{"task":"generate","prompt":"hi"} x"#[..],
            br#"{"task":"generate","prompt":"hi"}{"prompt":"again"}"#,
            b"{\"task\":\"generate\",\"prompt\":\"hi\"}\0",
        ] {
            let err = RouteRequest::parse(body).err();
            let message = err.map(|e| e.message).unwrap_or_default();
            assert!(message.contains("after the JSON body"), "{message}");
        }
        assert!(RouteRequest::parse(b"{\"task\":\"generate\",\"prompt\":\"hi\"}\n\t ").is_ok());
    }

    #[test]
    fn an_error_body_ignores_unknown_fields() {
        round_trips_with_an_unknown_field(&ErrorBody {
            error: ErrorDetail {
                message: "no".to_owned(),
                kind: "invalid_request_error".to_owned(),
                param: Some("task".to_owned()),
                code: None,
                failure: None,
            },
        });
    }

    #[test]
    fn an_invalid_request_is_an_invalid_request_error_naming_the_field() {
        let detail = ErrorDetail::from(&InvalidRequest::field("task", "unknown task"));
        assert_eq!(
            serde_json::to_value(&detail).unwrap(),
            serde_json::json!({"message": "unknown task", "type": "invalid_request_error", "param": "task", "code": null})
        );
    }

    #[test]
    fn the_callers_request_still_refuses_unknown_fields() {
        let body = with_unknown_field(serde_json::json!({"prompt": "hi"}));
        let err = RouteRequest::parse(&body).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("added_in_a_later_release"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = RouteRequest::parse(&body);
        }

        #[test]
        fn any_valid_budget_and_prompt_round_trip(budget in 1u64..=MAX_LATENCY_MS_LIMIT, prompt in "[a-z ]{0,20}[a-z]", private in proptest::prelude::any::<bool>()) {
            let body = serde_json::json!({"task":"generate","prompt":prompt,"max_latency_ms":budget,"private":private});
            let req = RouteRequest::parse(body.to_string().as_bytes()).unwrap();
            proptest::prop_assert_eq!(req.max_latency_ms, budget);
            proptest::prop_assert_eq!(req.private, private);
            proptest::prop_assert_eq!(req.messages, vec![Message::user(prompt)]);
        }
    }
}
