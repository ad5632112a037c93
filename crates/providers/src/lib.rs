//! Provider clients behind one normalised interface.
//!
//! [`Providers::from_env`] builds every configured provider once at start;
//! each [`Provider`] answers [`chat`](Provider::chat),
//! [`chat_stream`](Provider::chat_stream) and [`embed`](Provider::embed)
//! with normalised types and classified [`ProviderError`]s. Every call is
//! bounded by the deadline of its [`CallScope`].
//!
//! Each client module holds its wire types and pure functions
//! (`build_*_request`, `parse_*`, `map_error`, a stream decoder); the async
//! methods only send.
//!
//! [`pool`] balances calls over several endpoints serving one model.
//!
//! # Features
//!
//! One cargo feature per provider family, all on by default: `ollama`,
//! `openai` (Groq, OpenAI, OpenRouter, DeepSeek, Mistral, vLLM), `google`
//! (Vertex AI and Gemini; the only one that needs `google-auth`),
//! `anthropic` and `bedrock` (the only one that needs `aws-sigv4` and
//! `aws-eventstream`). At least one must be on.
//!
//! A build without a family does not know its providers: its client module
//! and its [`Provider`] variant are left out, and [`Providers::get`]
//! answers `None` for its names, as for any unknown provider. Its settings
//! are not an error, since an environment shared by several functions may
//! carry them for the others, but [`Providers::from_env`] logs each one it
//! finds (variable or secret) at warn level, naming the feature that would
//! use it, so that a setting is never dropped without a word.
//!
//! Each family alone must build and pass clippy; CI-able checks:
//!
//! ```text
//! for f in ollama openai google anthropic bedrock; do
//!     cargo clippy -p providers --no-default-features --features $f --all-targets -- -D warnings
//! done
//! ```

#[cfg(not(any(
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
)))]
compile_error!("enable at least one provider family: ollama, openai, google, anthropic or bedrock");

#[cfg(feature = "anthropic")]
pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
mod config;
mod error;
mod error_class;
#[cfg(feature = "google")]
pub mod google;
#[cfg(test)]
mod loopback;
mod model_id;
#[cfg(feature = "ollama")]
pub mod ollama;
#[cfg(feature = "openai")]
pub mod openai;
pub mod pool;
mod retry_after;
mod stream;
mod transport;
#[cfg(all(
    test,
    feature = "ollama",
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
mod wire_tests;

use std::pin::Pin;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

pub use config::{ProviderConfigError, Providers, env_vars, secret_names};
pub use error::ProviderError;
pub use model_id::check_model_id;
pub use routing_core::chat::{
    ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, FinishReason,
    GenerationOptions, Locality, Logprobs, Message, Role, Usage,
};
pub use stream::STREAM_IDLE_TIMEOUT;

/// The scope of one provider call: an id for logs and the instant by which
/// the whole call (including reading a stream to its end) must be over.
/// Not the function runtime's `CallContext`, which describes the incoming
/// request.
#[derive(Debug, Clone, Copy)]
pub struct CallScope<'a> {
    /// The caller's id for this call, for logs.
    pub call_id: &'a str,
    /// When the call times out with [`ProviderError::Timeout`].
    pub deadline: tokio::time::Instant,
}

/// A streamed chat: deltas, then one [`ChatChunk::Done`] carrying the usage
/// the provider reported in the stream; or an error, after which the stream
/// ends.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatChunk, ProviderError>> + Send>>;

/// The wire protocol family of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Ollama's native `/api/*`.
    Ollama,
    /// OpenAI `/chat/completions` and compatible servers.
    OpenAiCompatible,
    /// Vertex AI Gemini with OAuth2.
    Vertex,
    /// The Gemini Developer API with an API key.
    Gemini,
    /// Anthropic Messages.
    Anthropic,
    /// AWS Bedrock Runtime Converse.
    Bedrock,
}

/// One configured provider (enum dispatch over the client families).
#[derive(Debug)]
pub enum Provider {
    /// Ollama.
    #[cfg(feature = "ollama")]
    Ollama(ollama::Ollama),
    /// groq, openai, openrouter, deepseek, mistral, vllm.
    #[cfg(feature = "openai")]
    OpenAiCompatible(openai::OpenAiCompatible),
    /// vertex or gemini.
    #[cfg(feature = "google")]
    Google(google::Gemini),
    /// anthropic.
    #[cfg(feature = "anthropic")]
    Anthropic(anthropic::Anthropic),
    /// bedrock.
    #[cfg(feature = "bedrock")]
    Bedrock(bedrock::Bedrock),
}

impl Provider {
    /// The configured name (`groq`, `openai`, ...), used as metric label.
    pub fn name(&self) -> &str {
        match self {
            #[cfg(feature = "ollama")]
            Provider::Ollama(p) => p.name(),
            #[cfg(feature = "openai")]
            Provider::OpenAiCompatible(p) => p.name(),
            #[cfg(feature = "google")]
            Provider::Google(p) => p.name(),
            #[cfg(feature = "anthropic")]
            Provider::Anthropic(p) => p.name(),
            #[cfg(feature = "bedrock")]
            Provider::Bedrock(p) => p.name(),
        }
    }

    /// The protocol family.
    pub fn kind(&self) -> ProviderKind {
        match self {
            #[cfg(feature = "ollama")]
            Provider::Ollama(_) => ProviderKind::Ollama,
            #[cfg(feature = "openai")]
            Provider::OpenAiCompatible(_) => ProviderKind::OpenAiCompatible,
            #[cfg(feature = "google")]
            Provider::Google(p) => p.kind(),
            #[cfg(feature = "anthropic")]
            Provider::Anthropic(_) => ProviderKind::Anthropic,
            #[cfg(feature = "bedrock")]
            Provider::Bedrock(_) => ProviderKind::Bedrock,
        }
    }

    /// Where the provider runs.
    pub fn locality(&self) -> Locality {
        match self {
            #[cfg(feature = "ollama")]
            Provider::Ollama(p) => p.locality(),
            #[cfg(feature = "openai")]
            Provider::OpenAiCompatible(p) => p.locality(),
            #[cfg(feature = "google")]
            Provider::Google(_) => Locality::External,
            #[cfg(feature = "anthropic")]
            Provider::Anthropic(_) => Locality::External,
            #[cfg(feature = "bedrock")]
            Provider::Bedrock(_) => Locality::External,
        }
    }

    fn span(&self, operation: &'static str, cx: &CallScope<'_>) -> tracing::Span {
        tracing::debug_span!(
            "provider_call",
            provider = self.name(),
            operation,
            call_id = cx.call_id
        )
    }

    /// A complete chat.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let call = async {
            match self {
                #[cfg(feature = "ollama")]
                Provider::Ollama(p) => p.chat(req, cx).await,
                #[cfg(feature = "openai")]
                Provider::OpenAiCompatible(p) => p.chat(req, cx).await,
                #[cfg(feature = "google")]
                Provider::Google(p) => p.chat(req, cx).await,
                #[cfg(feature = "anthropic")]
                Provider::Anthropic(p) => p.chat(req, cx).await,
                #[cfg(feature = "bedrock")]
                Provider::Bedrock(p) => p.chat(req, cx).await,
            }
        };
        call.instrument(self.span("chat", cx)).await
    }

    /// A streamed chat; usage comes from the stream's own usage events.
    pub async fn chat_stream(
        &self,
        req: &ChatRequest,
        cx: &CallScope<'_>,
    ) -> Result<ChatStream, ProviderError> {
        let call = async {
            match self {
                #[cfg(feature = "ollama")]
                Provider::Ollama(p) => p.chat_stream(req, cx).await,
                #[cfg(feature = "openai")]
                Provider::OpenAiCompatible(p) => p.chat_stream(req, cx).await,
                #[cfg(feature = "google")]
                Provider::Google(p) => p.chat_stream(req, cx).await,
                #[cfg(feature = "anthropic")]
                Provider::Anthropic(p) => p.chat_stream(req, cx).await,
                #[cfg(feature = "bedrock")]
                Provider::Bedrock(p) => p.chat_stream(req, cx).await,
            }
        };
        call.instrument(self.span("chat_stream", cx)).await
    }

    /// Embeddings; [`ProviderError::BadRequest`] where the provider has none.
    pub async fn embed(
        &self,
        req: &EmbedRequest,
        cx: &CallScope<'_>,
    ) -> Result<EmbedResponse, ProviderError> {
        let call = async {
            match self {
                #[cfg(feature = "ollama")]
                Provider::Ollama(p) => p.embed(req, cx).await,
                #[cfg(feature = "openai")]
                Provider::OpenAiCompatible(p) => p.embed(req, cx).await,
                #[cfg(feature = "google")]
                Provider::Google(p) => p.embed(req, cx).await,
                #[cfg(feature = "anthropic")]
                Provider::Anthropic(p) => p.embed(req, cx).await,
                #[cfg(feature = "bedrock")]
                Provider::Bedrock(p) => p.embed(req, cx).await,
            }
        };
        call.instrument(self.span("embed", cx)).await
    }
}
