//! The normalised request and response every provider client speaks.

use serde::{Deserialize, Serialize};

/// Where a provider runs, which decides whether private data may reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// Inside the cluster: nothing leaves (Ollama, vLLM in-cluster).
    InCluster,
    /// A third party's service on the internet.
    External,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Plain text content.
    pub content: String,
}

impl Message {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// A chat/generation request in provider-neutral form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The provider's own model id, e.g. `llama-3.1-8b-instant`.
    pub model: String,
    /// The conversation so far; at least one message.
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
    /// Further sampling settings and the end-user id.
    #[serde(default, flatten)]
    pub options: GenerationOptions,
    /// Ask for the generated tokens' log-probabilities. Clients send it
    /// only to providers known to return them (OpenAI but its reasoning
    /// models, OpenRouter, DeepSeek, vLLM, Ollama) and ignore it elsewhere;
    /// Gemini and Vertex report their mean on every answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
}

/// Sampling settings and the end-user id beyond the basic ones, as OpenAI
/// names them. Each client sends the ones its provider has a native form
/// for (e.g. Gemini's `generationConfig.seed`, Anthropic's
/// `metadata.user_id`); a setting a provider has no form for is not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationOptions {
    /// Nucleus sampling: only tokens within this probability mass, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Best-effort deterministic sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Penalises tokens that already appeared, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Penalises tokens by how often they appeared, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// The caller's end user, for the provider's abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl GenerationOptions {
    /// Whether no setting is given.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Log-probabilities of the generated tokens, normalised across providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logprobs {
    /// Natural-log probability of each generated token, in order; empty
    /// when the provider reports only the mean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<f64>,
    /// Mean log-probability per generated token (≤ 0).
    pub mean: f64,
}

impl Logprobs {
    /// From per-token log-probabilities; `None` when there is none or one
    /// is not a number.
    pub fn from_tokens(tokens: Vec<f64>) -> Option<Self> {
        if tokens.is_empty() || tokens.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mean = tokens.iter().sum::<f64>() / tokens.len() as f64;
        Some(Self {
            tokens,
            mean: mean.min(0.0),
        })
    }

    /// From a reported mean alone (Gemini's `avgLogprobs`).
    pub fn from_mean(mean: f64) -> Option<Self> {
        mean.is_finite().then(|| Self {
            tokens: Vec::new(),
            mean: mean.min(0.0),
        })
    }

    /// The geometric mean of the tokens' probabilities, in `[0, 1]`:
    /// `exp(mean)`.
    pub fn confidence(&self) -> f64 {
        self.mean.exp().clamp(0.0, 1.0)
    }
}

/// Why generation ended, normalised across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// Hit `max_tokens`.
    Length,
    /// Blocked by the provider's safety filter.
    ContentFilter,
    /// The model asked to call a tool.
    ToolCalls,
    /// The model refused.
    Refusal,
    /// Anything else the provider reported.
    Other,
}

/// Token counts as the provider reported them.
///
/// `input_tokens` includes `cached_input_tokens` and `cache_write_tokens`;
/// `output_tokens` includes `reasoning_tokens`. Clients convert each
/// provider's convention to this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// All generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic, Bedrock).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Hidden reasoning/thinking tokens, billed as output.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input plus output.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// A completed chat/generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model id the provider says served the request.
    pub model: String,
    /// The generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Provider-reported usage.
    pub usage: Usage,
    /// The generated tokens' log-probabilities, when asked for and the
    /// provider returned them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
}

/// One piece of a streamed chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatChunk {
    /// More generated text.
    Delta {
        /// The new text.
        text: String,
    },
    /// The stream ended normally; usage is what the provider reported.
    Done {
        /// Why generation stopped.
        finish_reason: FinishReason,
        /// Provider-reported usage; zeros when the provider sent none.
        usage: Usage,
    },
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The provider's model id.
    pub model: String,
    /// Texts to embed, in order.
    pub inputs: Vec<String>,
}

/// Vectors in the order of the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// The model that produced them.
    pub model: String,
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// Provider-reported usage (input tokens only).
    pub usage: Usage,
}
