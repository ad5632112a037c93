//! The local backend: all-MiniLM-L6-v2 in this process.
//!
//! The forward pass is CPU work of milliseconds to seconds, so it runs on tokio's blocking
//! threads, never on the runtime's workers: health checks and metrics keep answering while a big
//! batch is embedded. A semaphore bounds how many passes run at once (each holds its activations
//! in memory); a permit is held by the blocking task itself, so a caller that goes away does not
//! free its slot before the work it started is done.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use minilm::MiniLm;
use tokio::sync::Semaphore;

use crate::error::EmbedError;

/// Vectors and the tokens they took.
#[derive(Debug)]
pub(crate) struct Computed {
    /// One per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens over all inputs, after truncation, special tokens included.
    pub tokens: u64,
}

/// The loaded model and its limits.
pub(crate) struct LocalBackend {
    model: Arc<MiniLm>,
    permits: Arc<Semaphore>,
    max_tokens: usize,
}

impl LocalBackend {
    /// Loads the model from `model_dir` on a blocking thread.
    pub(crate) async fn load(
        model_dir: PathBuf,
        max_tokens: usize,
        concurrency: usize,
    ) -> Result<Self, String> {
        let started = Instant::now();
        let dir = model_dir.clone();
        let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
            .await
            .map_err(|e| format!("loading the model: {e}"))?
            .map_err(|e| {
                format!(
                    "loading the model from {} (run scripts/fetch-model.sh, or set \
                     EMBED_MODEL_DIR): {e}",
                    model_dir.display()
                )
            })?;
        tracing::info!(
            model = minilm::MODEL_ID,
            model_dir = %model_dir.display(),
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(Self {
            model: Arc::new(model),
            permits: Arc::new(Semaphore::new(concurrency)),
            max_tokens,
        })
    }

    /// Embeds non-empty `inputs` (already checked against the byte limits); refuses a request
    /// over the token limit. Tokenising and the forward pass both run only with a permit, so at
    /// most `concurrency` requests hold tokeniser or model memory at once.
    pub(crate) async fn embed(&self, inputs: Vec<String>) -> Result<Computed, EmbedError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        let model = Arc::clone(&self.model);
        let (inputs, counts) = blocking(move || {
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let counts = model.token_counts(&texts);
            (inputs, counts)
        })
        .await?;
        let tokens: usize = counts
            .map_err(|e| EmbedError::Model(e.to_string()))?
            .iter()
            .sum();
        if tokens > self.max_tokens {
            return Err(EmbedError::TooLarge {
                param: "input",
                message: format!(
                    "the inputs hold {tokens} tokens; at most {} per request",
                    self.max_tokens
                ),
            });
        }
        let model = Arc::clone(&self.model);
        let embedded = blocking(move || {
            let _permit = permit;
            let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
            model.embed_with_counts(&texts)
        })
        .await?
        .map_err(|e| EmbedError::Model(e.to_string()))?;
        Ok(Computed {
            tokens: embedded.total_tokens() as u64,
            vectors: embedded.vectors,
        })
    }
}

/// Runs `work` on a blocking thread; a panic in it becomes a model error.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EmbedError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EmbedError::Model(format!("the model's task failed: {e}")))
}
