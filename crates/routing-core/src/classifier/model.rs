//! The trained classifier: two linear heads over [`features`](super::features)
//! with temperature-scaled probabilities, loaded from a JSON model file that
//! `scripts/train-classifier.py` writes.
//!
//! - The task head is a multinomial logistic regression over the model's
//!   tasks: `softmax((W·x + b) / T_task)`.
//! - The strong head is a binary logistic regression for "this prompt needs
//!   the strong model" (the weak model gets it wrong and the strong one right):
//!   `sigmoid((w·x + b) / T_strong)`.
//!
//! Difficulty is read off the strong head with the model's two thresholds, and
//! the overall confidence is the probability that the task is right times the
//! probability that the needs-strong call (at one half) is right.

use base64::Engine as _;
use serde::Deserialize;

use super::features::{self, DIM, FEATURE_VERSION, SparseFeatures};
use crate::api::ClassifyResponse;
use crate::task::{Difficulty, Task};

/// The `format` a model file declares.
pub const MODEL_FORMAT: &str = "faas-llm-router/classifier";
/// The model file layout this build reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// A model file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Not JSON of the expected shape.
    #[error("model file does not parse: {0}")]
    Parse(String),
    /// Parsed, but inconsistent or made for other features.
    #[error("model file is invalid: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

#[derive(Debug, Deserialize)]
struct ModelFile {
    format: String,
    format_version: u32,
    id: String,
    feature_version: u32,
    feature_fingerprint: String,
    dim: usize,
    tasks: Vec<Task>,
    task_temperature: f32,
    task_bias: Vec<f32>,
    task_weights: String,
    strong_temperature: f32,
    strong_bias: f32,
    strong_weights: String,
    difficulty_thresholds: Thresholds,
}

/// Needs-strong probabilities at which difficulty changes tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Thresholds {
    /// From this probability on a prompt is at least medium.
    pub medium_from: f32,
    /// From this probability on a prompt is hard.
    pub hard_from: f32,
}

/// A loaded, validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    id: String,
    tasks: Vec<Task>,
    task_temperature: f32,
    task_bias: Vec<f32>,
    /// `tasks.len()` rows of [`DIM`] weights, row-major.
    task_weights: Vec<f32>,
    strong_temperature: f32,
    strong_bias: f32,
    strong_weights: Vec<f32>,
    thresholds: Thresholds,
}

/// What the model says about one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Probability of each of the model's tasks, in the model's order; they
    /// sum to 1.
    pub task_probs: Vec<(Task, f32)>,
    /// Probability that the prompt needs the strong model.
    pub needs_strong: f32,
}

impl Prediction {
    /// The most likely task and its probability (ties go to the earlier
    /// task); `Generate` with probability 0 when there are no tasks.
    pub fn top_task(&self) -> (Task, f32) {
        self.task_probs
            .iter()
            .copied()
            .fold(None, |best: Option<(Task, f32)>, (t, p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((t, p)),
            })
            .unwrap_or((Task::Generate, 0.0))
    }

    /// The probability that the needs-strong call at one half is right.
    pub fn strong_call_confidence(&self) -> f32 {
        self.needs_strong.max(1.0 - self.needs_strong)
    }

    /// The difficulty tier under `thresholds`.
    pub fn difficulty(&self, thresholds: Thresholds) -> Difficulty {
        if self.needs_strong >= thresholds.hard_from {
            Difficulty::Hard
        } else if self.needs_strong >= thresholds.medium_from {
            Difficulty::Medium
        } else {
            Difficulty::Simple
        }
    }

    /// The probability that the task is right and the needs-strong call is
    /// right, taking the two as independent.
    pub fn confidence(&self) -> f32 {
        (self.top_task().1 * self.strong_call_confidence()).clamp(0.0, 1.0)
    }
}

fn decode_f32s(name: &str, b64: &str, expected: usize) -> Result<Vec<f32>, ModelError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| invalid(format!("{name} is not base64: {e}")))?;
    if bytes.len() != expected * 4 {
        return Err(invalid(format!(
            "{name} holds {} bytes; expected {} ({} little-endian f32)",
            bytes.len(),
            expected * 4,
            expected
        )));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(invalid(format!("{name} holds a non-finite weight")));
    }
    Ok(values)
}

fn softmax_in_place(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 && sum.is_finite() {
        z.iter_mut().for_each(|v| *v /= sum);
    } else {
        let n = z.len().max(1) as f32;
        z.iter_mut().for_each(|v| *v = 1.0 / n);
    }
}

fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Model {
    /// Parses and validates a model file.
    pub fn from_json(json: &str) -> Result<Self, ModelError> {
        let file: ModelFile =
            serde_json::from_str(json).map_err(|e| ModelError::Parse(e.to_string()))?;
        if file.format != MODEL_FORMAT {
            return Err(invalid(format!(
                "format is {:?}; expected {MODEL_FORMAT:?}",
                file.format
            )));
        }
        if file.format_version != MODEL_FORMAT_VERSION {
            return Err(invalid(format!(
                "format_version is {}; this build reads {MODEL_FORMAT_VERSION}",
                file.format_version
            )));
        }
        if file.feature_version != FEATURE_VERSION || file.dim != DIM {
            return Err(invalid(format!(
                "trained on features v{} with {} dimensions; this build extracts v{FEATURE_VERSION} with {DIM}",
                file.feature_version, file.dim
            )));
        }
        let fingerprint = features::fingerprint();
        if file.feature_fingerprint != fingerprint {
            return Err(invalid(format!(
                "trained on features with fingerprint {}; this build's is {fingerprint} (retrain with scripts/train-classifier.py)",
                file.feature_fingerprint
            )));
        }
        let k = file.tasks.len();
        if k < 2 {
            return Err(invalid("needs at least two tasks"));
        }
        if (1..k).any(|i| file.tasks[..i].contains(&file.tasks[i])) {
            return Err(invalid("tasks repeat"));
        }
        if file.task_bias.len() != k || file.task_bias.iter().any(|b| !b.is_finite()) {
            return Err(invalid(format!("task_bias needs {k} finite values")));
        }
        for (name, t) in [
            ("task_temperature", file.task_temperature),
            ("strong_temperature", file.strong_temperature),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(invalid(format!("{name} must be a positive number")));
            }
        }
        if !file.strong_bias.is_finite() {
            return Err(invalid("strong_bias must be finite"));
        }
        let th = file.difficulty_thresholds;
        if !(0.0..=1.0).contains(&th.medium_from)
            || !(0.0..=1.0).contains(&th.hard_from)
            || th.medium_from > th.hard_from
        {
            return Err(invalid(
                "difficulty_thresholds need 0 <= medium_from <= hard_from <= 1",
            ));
        }
        let task_weights = decode_f32s("task_weights", &file.task_weights, k * DIM)?;
        let strong_weights = decode_f32s("strong_weights", &file.strong_weights, DIM)?;
        Ok(Self {
            id: file.id,
            tasks: file.tasks,
            task_temperature: file.task_temperature,
            task_bias: file.task_bias,
            task_weights,
            strong_temperature: file.strong_temperature,
            strong_bias: file.strong_bias,
            strong_weights,
            thresholds: th,
        })
    }

    /// Reads and validates a model file from disk.
    pub fn from_path(path: &std::path::Path) -> Result<Self, ModelError> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Parse(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&json)
    }

    /// The model's id (from the model file).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tasks the model tells apart, in its order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The difficulty thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Predicts from an extracted feature vector.
    pub fn predict_features(&self, x: &SparseFeatures) -> Prediction {
        let mut z: Vec<f32> = self
            .task_weights
            .chunks_exact(DIM)
            .zip(&self.task_bias)
            .map(|(row, b)| (x.dot(row) + b) / self.task_temperature)
            .collect();
        softmax_in_place(&mut z);
        let strong = (x.dot(&self.strong_weights) + self.strong_bias) / self.strong_temperature;
        Prediction {
            task_probs: self.tasks.iter().copied().zip(z).collect(),
            needs_strong: sigmoid(strong),
        }
    }

    /// Extracts the features of `text` and predicts.
    pub fn predict(&self, text: &str) -> Prediction {
        self.predict_features(&features::extract(text))
    }

    /// The wire answer for a prediction.
    pub fn response(&self, p: &Prediction) -> ClassifyResponse {
        let (task, task_confidence) = p.top_task();
        ClassifyResponse {
            task,
            difficulty: p.difficulty(self.thresholds),
            confidence: round3(p.confidence()),
            task_confidence: Some(round3(task_confidence)),
            needs_strong: Some(round3(p.needs_strong)),
            method: Some(format!("model:{}", self.id)),
        }
    }

    /// Classifies `text`.
    pub fn classify(&self, text: &str) -> ClassifyResponse {
        self.response(&self.predict(text))
    }
}

/// Rounds to three decimals (the wire precision).
pub(crate) fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}
