//! Which provider an emulator pretends to be, and the per-provider facts
//! (base path, models, default latency) that do not depend on a request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::latency::{Distribution, LatencyModel};

/// One emulated provider. An emulator serves exactly one flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderFlavor {
    /// Ollama's native API (`/api/*`), no auth.
    Ollama,
    /// OpenAI (`/v1/*`).
    OpenAi,
    /// Groq's OpenAI-compatible API (`/openai/v1/*`).
    Groq,
    /// OpenRouter (`/api/v1/*`).
    OpenRouter,
    /// DeepSeek (`/chat/completions`, also under `/v1`).
    DeepSeek,
    /// Mistral La Plateforme (`/v1/*`).
    Mistral,
    /// A vLLM OpenAI-compatible server (`/v1/*`), auth only when a key is configured.
    Vllm,
    /// Vertex AI Gemini, with its own OAuth token endpoint and metadata server.
    Vertex,
    /// The Gemini Developer API (`/v1beta/models/*`, API key).
    Gemini,
    /// Anthropic's Messages API.
    Anthropic,
    /// AWS Bedrock Runtime Converse / ConverseStream.
    Bedrock,
}

impl ProviderFlavor {
    /// Every flavor, in a stable order.
    pub const ALL: [ProviderFlavor; 11] = [
        Self::Ollama,
        Self::OpenAi,
        Self::Groq,
        Self::OpenRouter,
        Self::DeepSeek,
        Self::Mistral,
        Self::Vllm,
        Self::Vertex,
        Self::Gemini,
        Self::Anthropic,
        Self::Bedrock,
    ];

    /// The lowercase name used on the command line, in JSON and in `ready` lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ollama => "ollama",
            Self::OpenAi => "openai",
            Self::Groq => "groq",
            Self::OpenRouter => "openrouter",
            Self::DeepSeek => "deepseek",
            Self::Mistral => "mistral",
            Self::Vllm => "vllm",
            Self::Vertex => "vertex",
            Self::Gemini => "gemini",
            Self::Anthropic => "anthropic",
            Self::Bedrock => "bedrock",
        }
    }

    /// The path the official SDK's base URL carries after the host:
    /// `/openai/v1` for Groq, `/v1` for OpenAI, nothing for Anthropic, Google,
    /// Bedrock, DeepSeek and Ollama.
    pub fn base_path(self) -> &'static str {
        match self {
            Self::OpenAi | Self::Mistral | Self::Vllm => "/v1",
            Self::Groq => "/openai/v1",
            Self::OpenRouter => "/api/v1",
            Self::Ollama
            | Self::DeepSeek
            | Self::Vertex
            | Self::Gemini
            | Self::Anthropic
            | Self::Bedrock => "",
        }
    }

    /// Whether this flavor speaks the OpenAI chat-completions protocol.
    pub fn is_openai_compatible(self) -> bool {
        matches!(
            self,
            Self::OpenAi
                | Self::Groq
                | Self::OpenRouter
                | Self::DeepSeek
                | Self::Mistral
                | Self::Vllm
        )
    }

    /// The models the emulator lists by default.
    pub fn default_models(self) -> Vec<String> {
        let ids: &[&str] = match self {
            Self::Ollama => &[
                "llama3.2:latest",
                "qwen2.5:7b",
                "all-minilm:latest",
                "nomic-embed-text:latest",
            ],
            Self::OpenAi => &[
                "gpt-4o-mini",
                "gpt-4.1-mini",
                "gpt-4.1",
                "gpt-5-mini",
                "text-embedding-3-small",
                "text-embedding-3-large",
            ],
            Self::Groq => &[
                "llama-3.1-8b-instant",
                "llama-3.3-70b-versatile",
                "openai/gpt-oss-20b",
                "openai/gpt-oss-120b",
            ],
            Self::OpenRouter => &[
                "openai/gpt-4o-mini",
                "anthropic/claude-haiku-4.5",
                "meta-llama/llama-3.3-70b-instruct",
            ],
            Self::DeepSeek => &["deepseek-chat", "deepseek-reasoner"],
            Self::Mistral => &[
                "mistral-small-latest",
                "mistral-large-latest",
                "mistral-embed",
            ],
            Self::Vllm => &["Qwen/Qwen2.5-7B-Instruct"],
            Self::Vertex => &[
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "gemini-2.5-pro",
                "gemini-embedding-001",
                "text-embedding-005",
                "text-multilingual-embedding-002",
            ],
            Self::Gemini => &[
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "gemini-2.5-pro",
                "gemini-embedding-001",
            ],
            Self::Anthropic => &["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"],
            Self::Bedrock => &[
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "amazon.titan-embed-text-v2:0",
            ],
        };
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Whether a model that is not in the list is still served. Local
    /// servers (Ollama, vLLM) answer only for what they have; the cloud
    /// emulators accept any id so tests need not track every catalogue.
    pub fn accepts_unlisted_models(self) -> bool {
        !matches!(self, Self::Ollama | Self::Vllm)
    }

    /// The model context window the emulator enforces (tokens), as the
    /// provider's own context-length error reports it.
    pub fn context_window(self) -> u64 {
        match self {
            Self::Ollama => 4096,
            Self::Vllm => 32768,
            Self::OpenAi | Self::Groq | Self::OpenRouter | Self::Mistral => 128_000,
            Self::DeepSeek => 65536,
            Self::Vertex | Self::Gemini => 1_048_575,
            Self::Anthropic | Self::Bedrock => 200_000,
        }
    }

    /// Default latency, from the published figures in the provider
    /// reference (§8.5): time to first token and output tokens per second.
    /// Providers without published figures get a conservative middle value.
    pub fn default_latency(self) -> LatencyModel {
        let (ttft_ms, jitter_ms, tps) = match self {
            Self::Ollama => (150.0, 30.0, 40.0),
            Self::Vllm => (80.0, 20.0, 90.0),
            Self::OpenAi => (758.0, 150.0, 110.0),
            Self::Groq => (50.0, 15.0, 560.0),
            Self::OpenRouter => (900.0, 250.0, 90.0),
            Self::DeepSeek => (1000.0, 300.0, 50.0),
            Self::Mistral => (600.0, 150.0, 100.0),
            Self::Vertex | Self::Gemini => (492.0, 100.0, 204.5),
            Self::Anthropic | Self::Bedrock => (600.0, 200.0, 120.0),
        };
        LatencyModel {
            ttft: Distribution::LogNormal {
                mean_ms: ttft_ms,
                jitter_ms,
            },
            tokens_per_second: Some(tps),
        }
    }
}

impl fmt::Display for ProviderFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProviderFlavor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| Error::UnknownFlavor(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for flavor in ProviderFlavor::ALL {
            assert_eq!(flavor.name().parse::<ProviderFlavor>().unwrap(), flavor);
            let json = serde_json::to_string(&flavor).unwrap();
            assert_eq!(json, format!("\"{}\"", flavor.name()));
            assert_eq!(
                serde_json::from_str::<ProviderFlavor>(&json).unwrap(),
                flavor
            );
        }
        assert!("nonesuch".parse::<ProviderFlavor>().is_err());
    }
}
