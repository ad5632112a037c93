//! Task and difficulty classification cheap enough to sit in front of every
//! request.
//!
//! - [`features`]: lexical and structural features, the only implementation
//!   (the training script reads them from the `classifier-features` example).
//! - [`signal`]: the length and structure values the difficulty score reads.
//! - [`model`]: the trained heads: task probabilities and `needs_strong`.
//! - [`lexical`]: the hand-weighted heuristic, used when no model loads.
//!
//! The default model (`models/classifier.json`, written by
//! `scripts/train-classifier.py`) is compiled in.

pub mod features;
pub mod lexical;
pub mod model;
pub mod signal;

use std::sync::LazyLock;

pub use model::{Model, ModelError, Prediction, Thresholds, TierQuality};

use crate::api::ClassifyResponse;

/// The default model file, compiled in.
pub const DEFAULT_MODEL_JSON: &str = include_str!("../../models/classifier.json");

static DEFAULT_MODEL: LazyLock<Result<Model, ModelError>> =
    LazyLock::new(|| Model::from_json(DEFAULT_MODEL_JSON));

/// The compiled-in model, parsed on first use.
pub fn default_model() -> Result<&'static Model, &'static ModelError> {
    DEFAULT_MODEL.as_ref()
}

/// Classifies `text` with the compiled-in model, or with the heuristic when
/// that model does not load (a build with a stale model file; tests catch it).
pub fn classify(text: &str) -> ClassifyResponse {
    match default_model() {
        Ok(model) => model.classify(text),
        Err(_) => lexical::classify(text),
    }
}
