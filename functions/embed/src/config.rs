//! The embed function's settings, read from the environment.

use std::path::PathBuf;
use std::time::Duration;

use routing_core::env::Env;

/// `EMBED_BACKEND`: `local` (in-process all-MiniLM-L6-v2, the default) or `ollama`.
pub(crate) const ENV_EMBED_BACKEND: &str = "EMBED_BACKEND";
/// `EMBED_MODEL_DIR`: the local model's folder (relative to the working directory).
pub(crate) const ENV_EMBED_MODEL_DIR: &str = "EMBED_MODEL_DIR";
/// `EMBED_MODEL`: the Ollama backend's model id.
pub(crate) const ENV_EMBED_MODEL: &str = "EMBED_MODEL";
/// `EMBED_TIMEOUT_MS`: the longest one Ollama call may take.
pub(crate) const ENV_EMBED_TIMEOUT_MS: &str = "EMBED_TIMEOUT_MS";
/// `EMBED_MAX_INPUTS`: the most texts one request may carry.
pub(crate) const ENV_EMBED_MAX_INPUTS: &str = "EMBED_MAX_INPUTS";
/// `EMBED_MAX_TOKENS`: the most tokens (after truncation) one request may carry, local backend.
pub(crate) const ENV_EMBED_MAX_TOKENS: &str = "EMBED_MAX_TOKENS";
/// `EMBED_MAX_INPUT_BYTES`: the longest text (UTF-8 bytes), checked before tokenising.
pub(crate) const ENV_EMBED_MAX_INPUT_BYTES: &str = "EMBED_MAX_INPUT_BYTES";
/// `EMBED_MAX_REQUEST_BYTES`: the most text (UTF-8 bytes) one request may carry, checked before
/// tokenising.
pub(crate) const ENV_EMBED_MAX_REQUEST_BYTES: &str = "EMBED_MAX_REQUEST_BYTES";
/// `EMBED_CONCURRENCY`: forward passes run at once, local backend; more wait their turn.
pub(crate) const ENV_EMBED_CONCURRENCY: &str = "EMBED_CONCURRENCY";

/// Default `EMBED_MODEL_DIR`: where the image puts the model (`/home/app/assets/model`).
pub(crate) const DEFAULT_MODEL_DIR: &str = "assets/model";
/// Default `EMBED_MAX_INPUTS`.
pub(crate) const DEFAULT_MAX_INPUTS: usize = 256;
/// Default `EMBED_MAX_TOKENS`: 32 texts of 256 tokens, about ten seconds of one core.
pub(crate) const DEFAULT_MAX_TOKENS: usize = 8_192;
/// Default `EMBED_MAX_INPUT_BYTES`: 16 KiB. The model reads the first 256 tokens (about 1 KiB of
/// English); tokenising costs memory in proportion to the whole text.
pub(crate) const DEFAULT_MAX_INPUT_BYTES: usize = 16 * 1024;
/// Default `EMBED_MAX_REQUEST_BYTES`: 256 KiB.
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Which backend computes the vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendConfig {
    /// all-MiniLM-L6-v2 in this process.
    Local {
        /// The model's folder.
        model_dir: PathBuf,
        /// Most tokens per request.
        max_tokens: usize,
        /// Forward passes at once.
        concurrency: usize,
    },
    /// The in-cluster Ollama's `/api/embed`.
    Ollama {
        /// Ollama's model id.
        model: String,
        /// Longest call.
        timeout: Duration,
    },
}

/// The embed function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmbedConfig {
    /// The backend.
    pub backend: BackendConfig,
    /// Most texts per request.
    pub max_inputs: usize,
    /// Longest text, in bytes.
    pub max_input_bytes: usize,
    /// Most text per request, in bytes.
    pub max_request_bytes: usize,
}

impl EmbedConfig {
    /// Reads the settings; names the variable at fault.
    pub(crate) fn from_env(env: &Env) -> Result<Self, String> {
        let positive = |name: &str, default: usize| -> Result<usize, String> {
            let value = env.parse_or(name, default).map_err(|e| e.to_string())?;
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
            Ok(value)
        };
        let backend = match env.get_or(ENV_EMBED_BACKEND, "local") {
            "local" => BackendConfig::Local {
                model_dir: PathBuf::from(env.get_or(ENV_EMBED_MODEL_DIR, DEFAULT_MODEL_DIR)),
                max_tokens: positive(ENV_EMBED_MAX_TOKENS, DEFAULT_MAX_TOKENS)?,
                concurrency: positive(ENV_EMBED_CONCURRENCY, 1)?,
            },
            "ollama" => BackendConfig::Ollama {
                model: env.get_or(ENV_EMBED_MODEL, "all-minilm").to_owned(),
                timeout: Duration::from_millis(
                    env.parse_or(ENV_EMBED_TIMEOUT_MS, 30_000u64)
                        .map_err(|e| e.to_string())?,
                ),
            },
            other => {
                return Err(format!(
                    "{ENV_EMBED_BACKEND}={other:?} is not supported; use \"local\" or \"ollama\""
                ));
            }
        };
        Ok(Self {
            backend,
            max_inputs: positive(ENV_EMBED_MAX_INPUTS, DEFAULT_MAX_INPUTS)?,
            max_input_bytes: positive(ENV_EMBED_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_BYTES)?,
            max_request_bytes: positive(ENV_EMBED_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_BYTES)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<EmbedConfig, String> {
        EmbedConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn local_is_the_default_with_the_image_s_model_folder() {
        assert_eq!(
            config(&[]).unwrap(),
            EmbedConfig {
                backend: BackendConfig::Local {
                    model_dir: PathBuf::from("assets/model"),
                    max_tokens: DEFAULT_MAX_TOKENS,
                    concurrency: 1,
                },
                max_inputs: DEFAULT_MAX_INPUTS,
                max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
                max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            }
        );
    }

    #[test]
    fn every_setting_is_read() {
        let local = config(&[
            ("EMBED_MODEL_DIR", "/models/minilm"),
            ("EMBED_MAX_TOKENS", "100"),
            ("EMBED_CONCURRENCY", "2"),
            ("EMBED_MAX_INPUTS", "8"),
            ("EMBED_MAX_INPUT_BYTES", "1000"),
            ("EMBED_MAX_REQUEST_BYTES", "4000"),
        ])
        .unwrap();
        assert_eq!(
            (local.max_input_bytes, local.max_request_bytes),
            (1000, 4000)
        );
        assert_eq!(
            local.backend,
            BackendConfig::Local {
                model_dir: PathBuf::from("/models/minilm"),
                max_tokens: 100,
                concurrency: 2,
            }
        );
        assert_eq!(local.max_inputs, 8);
        let ollama = config(&[
            ("EMBED_BACKEND", "ollama"),
            ("EMBED_MODEL", "nomic-embed-text"),
            ("EMBED_TIMEOUT_MS", "500"),
        ])
        .unwrap();
        assert_eq!(
            ollama.backend,
            BackendConfig::Ollama {
                model: "nomic-embed-text".into(),
                timeout: Duration::from_millis(500),
            }
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(
            config(&[("EMBED_BACKEND", "openai")])
                .unwrap_err()
                .contains("EMBED_BACKEND")
        );
        assert!(
            config(&[("EMBED_MAX_INPUTS", "0")])
                .unwrap_err()
                .contains("EMBED_MAX_INPUTS")
        );
        assert!(
            config(&[("EMBED_MAX_TOKENS", "many")])
                .unwrap_err()
                .contains("EMBED_MAX_TOKENS")
        );
        assert!(
            config(&[("EMBED_CONCURRENCY", "0")])
                .unwrap_err()
                .contains("EMBED_CONCURRENCY")
        );
    }
}
