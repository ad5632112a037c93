//! Embeddings computed in the cluster, by the backend `EMBED_BACKEND` names: `local` runs
//! all-MiniLM-L6-v2 in this process, `ollama` calls the in-cluster Ollama `/api/embed`.
//! Requests are checked here, whatever the backend.

use faas_runtime::register_metric;
use prometheus::{IntCounterVec, Opts, Registry};
use routing_core::api::EmbedFunctionResponse;
use routing_core::chat::Usage;
use routing_core::env::Env;

use crate::config::{BackendConfig, EmbedConfig};
use crate::error::EmbedError;
use crate::local::LocalBackend;
use crate::ollama::OllamaBackend;

/// The provider name the local backend answers with.
pub(crate) const LOCAL_PROVIDER: &str = "local";

/// The backend that computes the vectors.
enum Backend {
    Local(LocalBackend),
    Ollama(OllamaBackend),
}

/// The embed function's state.
pub(crate) struct Embedder {
    backend: Backend,
    limits: Limits,
    texts: IntCounterVec,
    tokens: IntCounterVec,
}

impl Embedder {
    /// Builds the backend (the local one loads its model) and registers the metrics.
    pub(crate) async fn new(
        config: EmbedConfig,
        env: &Env,
        registry: &Registry,
    ) -> Result<Self, String> {
        let backend = match config.backend {
            BackendConfig::Local {
                model_dir,
                max_tokens,
                concurrency,
            } => Backend::Local(LocalBackend::load(model_dir, max_tokens, concurrency).await?),
            BackendConfig::Ollama { model, timeout } => {
                Backend::Ollama(OllamaBackend::new(env, model, timeout)?)
            }
        };
        let texts = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "embed_texts_total",
                    "Texts embedded, by backend and outcome.",
                ),
                &["backend", "outcome"],
            ),
        )
        .map_err(|e| e.to_string())?;
        let tokens = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new("embed_tokens_total", "Tokens embedded, by backend."),
                &["backend"],
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            backend,
            limits: Limits {
                inputs: config.max_inputs,
                input_bytes: config.max_input_bytes,
                request_bytes: config.max_request_bytes,
            },
            texts,
            tokens,
        })
    }

    /// The backend's name, as answers report it.
    pub(crate) fn provider(&self) -> &'static str {
        match &self.backend {
            Backend::Local(_) => LOCAL_PROVIDER,
            Backend::Ollama(_) => crate::ollama::PROVIDER,
        }
    }

    /// The model that computes the vectors.
    pub(crate) fn model(&self) -> &str {
        match &self.backend {
            Backend::Local(_) => minilm::MODEL_ID,
            Backend::Ollama(ollama) => ollama.model(),
        }
    }

    /// The vectors' length, when known before computing them.
    pub(crate) fn dimensions(&self) -> Option<usize> {
        match &self.backend {
            Backend::Local(_) => Some(minilm::DIMENSIONS),
            Backend::Ollama(_) => None,
        }
    }

    /// Whether `name` (as a client sends it in `model`) names the served model: its id, in any
    /// case, alone or after `<provider>/` (or `sentence-transformers/` for the local model).
    pub(crate) fn serves_model(&self, name: &str) -> bool {
        let bare = name
            .strip_prefix(&format!("{}/", self.provider()))
            .or_else(|| name.strip_prefix("sentence-transformers/"))
            .unwrap_or(name);
        bare.eq_ignore_ascii_case(self.model())
    }

    /// Embeds `inputs` (a request's `input`).
    pub(crate) async fn embed(
        &self,
        inputs: Option<Vec<String>>,
        call_id: &str,
    ) -> Result<EmbedFunctionResponse, EmbedError> {
        let inputs = inputs.unwrap_or_default();
        check(&inputs, &self.limits)?;
        let count = inputs.len() as u64;
        let backend = self.provider();
        let result = match &self.backend {
            Backend::Local(local) => {
                local
                    .embed(inputs)
                    .await
                    .map(|computed| EmbedFunctionResponse {
                        provider: LOCAL_PROVIDER.to_owned(),
                        model: minilm::MODEL_ID.to_owned(),
                        embeddings: computed.vectors,
                        usage: Usage {
                            input_tokens: computed.tokens,
                            ..Usage::default()
                        },
                    })
            }
            Backend::Ollama(ollama) => ollama.embed(inputs, call_id).await,
        };
        let outcome = match &result {
            Ok(answer) => {
                self.tokens
                    .with_label_values(&[backend])
                    .inc_by(answer.usage.input_tokens);
                "ok"
            }
            Err(e) => e.outcome(),
        };
        self.texts
            .with_label_values(&[backend, outcome])
            .inc_by(count);
        result
    }
}

/// What one request may carry, checked before any text is tokenised, so that
/// the memory a request takes is bounded by construction.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Texts.
    inputs: usize,
    /// Bytes of one text.
    input_bytes: usize,
    /// Bytes of all texts.
    request_bytes: usize,
}

/// Refuses no inputs, too many, empty ones and too much text.
fn check(inputs: &[String], limits: &Limits) -> Result<(), EmbedError> {
    let max_inputs = limits.inputs;
    if inputs.is_empty() {
        return Err(EmbedError::invalid(
            "input",
            "input must be a non-empty string or array of strings",
        ));
    }
    if inputs.len() > max_inputs {
        return Err(EmbedError::TooLarge {
            param: "input",
            message: format!(
                "{} inputs in one request; at most {max_inputs}",
                inputs.len()
            ),
        });
    }
    if let Some(index) = inputs.iter().position(String::is_empty) {
        return Err(EmbedError::invalid(
            &format!("input[{index}]"),
            "inputs must not be empty strings",
        ));
    }
    if let Some((index, text)) = inputs
        .iter()
        .enumerate()
        .find(|(_, text)| text.len() > limits.input_bytes)
    {
        return Err(EmbedError::TooLarge {
            param: "input",
            message: format!(
                "input[{index}] is {} bytes; at most {} (EMBED_MAX_INPUT_BYTES; the model reads \
                 only the first 256 tokens)",
                text.len(),
                limits.input_bytes
            ),
        });
    }
    let total: usize = inputs.iter().map(String::len).sum();
    if total > limits.request_bytes {
        return Err(EmbedError::TooLarge {
            param: "input",
            message: format!(
                "the inputs hold {total} bytes; at most {} per request (EMBED_MAX_REQUEST_BYTES)",
                limits.request_bytes
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(inputs: usize) -> Limits {
        Limits {
            inputs,
            input_bytes: 10,
            request_bytes: 25,
        }
    }

    #[test]
    fn too_much_text_is_a_413_before_any_tokenising() {
        let long = "x".repeat(11);
        let err = check(&texts(&["short", &long]), &limits(8)).unwrap_err();
        assert_eq!(err.status(), 413);
        let message = err.detail().message;
        assert!(
            message.contains("input[1]") && message.contains("EMBED_MAX_INPUT_BYTES"),
            "{message}"
        );
        // Multi-byte text counts in bytes, as memory does.
        assert!(check(&texts(&["ééééé"]), &limits(8)).is_ok());
        assert!(check(&texts(&["éééééé"]), &limits(8)).is_err());
        let err = check(&texts(&["0123456789"; 3]), &limits(8)).unwrap_err();
        assert_eq!(err.status(), 413);
        assert!(
            err.detail().message.contains("EMBED_MAX_REQUEST_BYTES"),
            "{err}"
        );
        assert!(check(&texts(&["0123456789", "0123456789", "01234"]), &limits(8)).is_ok());
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_input_is_a_400() {
        let err = check(&[], &limits(4)).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.detail().param.as_deref(), Some("input"));
    }

    #[test]
    fn too_many_inputs_is_a_413() {
        let err = check(&texts(&["a", "b", "c"]), &limits(2)).unwrap_err();
        assert_eq!(err.status(), 413);
        assert!(err.detail().message.contains("at most 2"), "{err}");
        assert_eq!(err.detail().kind, "invalid_request_error");
    }

    #[test]
    fn an_empty_string_is_a_400_naming_its_index() {
        let err = check(&texts(&["a", "", "c"]), &limits(8)).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.detail().param.as_deref(), Some("input[1]"));
    }

    #[test]
    fn whitespace_is_text() {
        assert!(check(&texts(&[" ", "\n"]), &limits(8)).is_ok());
    }
}
