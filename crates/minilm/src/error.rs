//! The crate's one error type.

use std::path::PathBuf;

/// Why loading the model or embedding texts failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is malformed or describes a model this crate does not run.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `model.safetensors` is malformed or lacks a tensor the model needs.
    #[error("{path}: {reason}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A text to embed is empty.
    #[error("text {index} is empty")]
    EmptyText {
        /// Its position in the batch.
        index: usize,
    },
    /// The forward pass failed (a shape or kernel error: a bug, not bad input).
    #[error("model forward pass: {0}")]
    Forward(#[from] candle_core::Error),
}
