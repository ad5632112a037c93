//! all-MiniLM-L6-v2 sentence embeddings, computed in-process on the CPU.
//!
//! [`MiniLm::load`] reads a model directory holding the files of the sentence-transformers
//! release (`config.json`, `model.safetensors`, `tokenizer.json`; `scripts/fetch-model.sh`
//! fetches them), and [`MiniLm::embed`] turns texts into 384-dimensional unit vectors the way
//! sentence-transformers does:
//!
//! 1. WordPiece tokenisation, truncated at [`MAX_TOKENS`] word pieces (`[CLS]` and `[SEP]`
//!    included);
//! 2. the BERT encoder over texts padded to the longest of their batch;
//! 3. the mean of the last hidden states over each text's own tokens (the attention mask);
//! 4. L2 normalisation.
//!
//! ```no_run
//! let model = minilm::MiniLm::load("assets/model")?;
//! let vectors = model.embed(&["How do I reset my card PIN?", "my card is blocked"])?;
//! let cosine: f32 = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
//! # Ok::<(), minilm::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batching;
mod bert;
mod config;
mod error;
mod pooling;
mod tokenize;
mod weights;

use std::path::Path;

pub use error::Error;

use bert::Bert;
use config::BertConfig;
use tokenize::WordPieces;
use weights::Weights;

/// Length of every embedding.
pub const DIMENSIONS: usize = 384;
/// The most word pieces of a text that count, `[CLS]` and `[SEP]` included; the rest is cut
/// (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;
/// The model's name.
pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// The hyper-parameters' file name in a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The weights' file name in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer's file name in a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Vectors and the token count of each text.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One unit vector of [`DIMENSIONS`] per text, in the texts' order.
    pub vectors: Vec<Vec<f32>>,
    /// Word pieces the model saw for each text, `[CLS]` and `[SEP]` included, at most
    /// [`MAX_TOKENS`].
    pub token_counts: Vec<usize>,
}

impl Embeddings {
    /// Tokens over all texts.
    pub fn total_tokens(&self) -> usize {
        self.token_counts.iter().sum()
    }
}

/// The loaded model: tokenizer and encoder weights. `Send + Sync`; embedding takes `&self`.
pub struct MiniLm {
    tokenizer: WordPieces,
    bert: Bert,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("model", &MODEL_ID).finish()
    }
}

impl MiniLm {
    /// Loads [`CONFIG_FILE`], [`WEIGHTS_FILE`] and [`TOKENIZER_FILE`] from `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read, [`Error::Config`] when the configuration is not
    /// this model's, [`Error::Weights`] when a tensor is missing or malformed,
    /// [`Error::Tokenizer`] when the tokenizer cannot be loaded.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let config = BertConfig::load(&dir.join(CONFIG_FILE))?;
        let tokenizer = WordPieces::load(&dir.join(TOKENIZER_FILE), config.vocab_size)?;
        let mut weights = Weights::open(&dir.join(WEIGHTS_FILE))?;
        let bert = Bert::load(&mut weights, &config)?;
        Ok(Self { tokenizer, bert })
    }

    /// Length of every embedding: 384.
    pub const fn dimensions() -> usize {
        DIMENSIONS
    }

    /// Word pieces the model sees for `text`, `[CLS]` and `[SEP]` included, at most
    /// [`MAX_TOKENS`].
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when tokenisation fails.
    pub fn token_count(&self, text: &str) -> Result<usize, Error> {
        Ok(self.token_counts(&[text])?.first().copied().unwrap_or(0))
    }

    /// [`MiniLm::token_count`] of each text; tokenisation alone, without the forward pass.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when tokenisation fails.
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, Error> {
        Ok(self.tokenizer.encode(texts)?.iter().map(Vec::len).collect())
    }

    /// One unit vector of [`DIMENSIONS`] per text, in order. An empty slice gives no vectors.
    ///
    /// # Errors
    /// [`Error::EmptyText`] for an empty text; [`Error::Tokenizer`] or [`Error::Forward`] when
    /// the model fails.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        Ok(self.embed_with_counts(texts)?.vectors)
    }

    /// [`MiniLm::embed`], with the token count of each text.
    ///
    /// # Errors
    /// As [`MiniLm::embed`].
    pub fn embed_with_counts(&self, texts: &[&str]) -> Result<Embeddings, Error> {
        if let Some(index) = texts.iter().position(|t| t.is_empty()) {
            return Err(Error::EmptyText { index });
        }
        let ids = self.tokenizer.encode(texts)?;
        let token_counts: Vec<usize> = ids.iter().map(Vec::len).collect();
        let mut vectors = vec![Vec::new(); texts.len()];
        for pass in batching::plan(&token_counts) {
            let batch = pass.texts.len();
            // Every text has at least [CLS] and [SEP]; max(1) only keeps chunks_exact sound.
            let len = pass.padded_len.max(1);
            let mut flat_ids = Vec::with_capacity(batch * len);
            let mut mask = Vec::with_capacity(batch * len);
            for &i in &pass.texts {
                flat_ids.extend_from_slice(&ids[i]);
                flat_ids.resize(flat_ids.len() + len - ids[i].len(), 0);
                mask.extend((0..len).map(|t| t < ids[i].len()));
            }
            let hidden = self.bert.forward(flat_ids, &mask, batch, len)?;
            for (&i, block) in pass.texts.iter().zip(hidden.chunks_exact(len * DIMENSIONS)) {
                vectors[i] = pooling::mean_normalised(block, token_counts[i], DIMENSIONS);
            }
        }
        Ok(Embeddings {
            vectors,
            token_counts,
        })
    }
}
