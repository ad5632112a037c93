//! The trained classifier: two logistic heads, loaded from a JSON model file
//! that `scripts/train-classifier.py` writes.
//!
//! - The task head is a multinomial logistic regression over the model's
//!   tasks and the [`features`](super::features):
//!   `softmax((W·x + b) / T_task)`.
//! - The gain head gives `needs_strong`, the expected quality gain of the
//!   strong tier over the weak one for this prompt, in `[0, 1]`: a logistic
//!   regression with soft targets over the standardised
//!   [`signal`](super::signal) values, `sigmoid(b + Σ w·(s - mean) / scale)`.
//!   It was fitted on labelled prompts of several kinds (exam questions,
//!   competition maths, instruction following, hard chat prompts, intents),
//!   each weighing the same, and chosen by how it ranks prompts of a kind it
//!   was not trained on (`models/classifier-report.md`). Its absolute level is
//!   only roughly calibrated on a new kind of traffic; its ranking is what
//!   transfers, so tiers are best cut at quantiles of recent scores.
//!
//! Difficulty is read off `needs_strong` with the model's two thresholds. The
//! confidence is the probability that the task is right: `needs_strong` is an
//! expected gain, not the probability of a yes/no call, so it has no "call is
//! right" probability to multiply in (a short, vague prompt has a low expected
//! gain and is no clearer for it).

use base64::Engine as _;
use serde::Deserialize;

use super::features::{self, DIM, FEATURE_VERSION, SparseFeatures};
use super::signal::{self, SIGNAL_DIM, SIGNAL_NAMES, SIGNAL_VERSION};
use crate::api::ClassifyResponse;
use crate::task::{Difficulty, Task};

/// The `format` a model file declares.
pub const MODEL_FORMAT: &str = "faas-llm-router/classifier";
/// The model file layout this build reads.
pub const MODEL_FORMAT_VERSION: u32 = 2;

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
    gain: GainFile,
    difficulty_thresholds: Thresholds,
}

/// The gain head as stored: standardisation and weights per signal value.
#[derive(Debug, Deserialize)]
struct GainFile {
    signal_version: u32,
    features: Vec<String>,
    mean: Vec<f32>,
    scale: Vec<f32>,
    weights: Vec<f32>,
    bias: f32,
    /// Per-tier quality heads over the same standardised values (optional).
    #[serde(default)]
    quality: Option<QualityFile>,
}

/// The per-tier quality heads as stored.
#[derive(Debug, Deserialize)]
struct QualityFile {
    weak: LinearFile,
    strong: LinearFile,
}

/// One logistic head over the standardised signal.
#[derive(Debug, Deserialize)]
struct LinearFile {
    weights: Vec<f32>,
    bias: f32,
}

/// The gain head, validated.
#[derive(Debug, Clone, PartialEq)]
struct GainHead {
    mean: [f32; SIGNAL_DIM],
    scale: [f32; SIGNAL_DIM],
    gain: Linear,
    /// Weak-tier and strong-tier quality heads.
    quality: Option<(Linear, Linear)>,
}

/// Weights over the standardised signal and a bias.
#[derive(Debug, Clone, PartialEq)]
struct Linear {
    weights: [f32; SIGNAL_DIM],
    bias: f32,
}

impl Linear {
    fn sigmoid_of(&self, z: &[f32; SIGNAL_DIM]) -> f32 {
        sigmoid((0..SIGNAL_DIM).fold(self.bias, |acc, i| acc + self.weights[i] * z[i]))
    }
}

/// Predicted quality of each tier for a prompt, in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierQuality {
    /// The weak tier's expected quality.
    pub weak: f32,
    /// The strong tier's expected quality.
    pub strong: f32,
}

impl GainHead {
    fn from_file(g: GainFile) -> Result<Self, ModelError> {
        if g.signal_version != SIGNAL_VERSION {
            return Err(invalid(format!(
                "gain head trained on signal v{}; this build extracts v{SIGNAL_VERSION}",
                g.signal_version
            )));
        }
        if g.features != SIGNAL_NAMES {
            return Err(invalid(format!(
                "gain head features are {:?}; this build extracts {SIGNAL_NAMES:?}",
                g.features
            )));
        }
        let array = |name: &str, v: &[f32]| -> Result<[f32; SIGNAL_DIM], ModelError> {
            let a: [f32; SIGNAL_DIM] = v.try_into().map_err(|_| {
                invalid(format!(
                    "gain.{name} needs {SIGNAL_DIM} values, has {}",
                    v.len()
                ))
            })?;
            if a.iter().any(|x| !x.is_finite()) {
                return Err(invalid(format!("gain.{name} holds a non-finite value")));
            }
            Ok(a)
        };
        let scale = array("scale", &g.scale)?;
        if scale.iter().any(|s| *s <= 0.0) {
            return Err(invalid("gain.scale must be positive"));
        }
        let linear = |name: &str, weights: &[f32], bias: f32| -> Result<Linear, ModelError> {
            if !bias.is_finite() {
                return Err(invalid(format!("{name} bias must be finite")));
            }
            Ok(Linear {
                weights: array(name, weights)?,
                bias,
            })
        };
        let quality = match &g.quality {
            Some(q) => Some((
                linear("quality.weak", &q.weak.weights, q.weak.bias)?,
                linear("quality.strong", &q.strong.weights, q.strong.bias)?,
            )),
            None => None,
        };
        Ok(Self {
            mean: array("mean", &g.mean)?,
            scale,
            gain: linear("weights", &g.weights, g.bias)?,
            quality,
        })
    }

    /// The expected gain of the strong tier for a prompt with signal `s`,
    /// and each tier's predicted quality when the model has those heads.
    fn predict(&self, s: &[f32; SIGNAL_DIM]) -> (f32, Option<TierQuality>) {
        let z: [f32; SIGNAL_DIM] = std::array::from_fn(|i| (s[i] - self.mean[i]) / self.scale[i]);
        let quality = self.quality.as_ref().map(|(weak, strong)| TierQuality {
            weak: weak.sigmoid_of(&z),
            strong: strong.sigmoid_of(&z),
        });
        (self.gain.sigmoid_of(&z), quality)
    }
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
    gain: GainHead,
    thresholds: Thresholds,
}

/// What the model says about one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Probability of each of the model's tasks, in the model's order; they
    /// sum to 1.
    pub task_probs: Vec<(Task, f32)>,
    /// The expected quality gain of the strong tier over the weak one, in
    /// `[0, 1]` (see the module doc); higher means more in need of the
    /// strong model.
    pub needs_strong: f32,
    /// Each tier's predicted quality, when the model has those heads.
    pub quality: Option<TierQuality>,
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

    /// The probability that the task is right.
    pub fn confidence(&self) -> f32 {
        self.top_task().1.clamp(0.0, 1.0)
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
        if !(file.task_temperature.is_finite() && file.task_temperature > 0.0) {
            return Err(invalid("task_temperature must be a positive number"));
        }
        let gain = GainHead::from_file(file.gain)?;
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
        Ok(Self {
            id: file.id,
            tasks: file.tasks,
            task_temperature: file.task_temperature,
            task_bias: file.task_bias,
            task_weights,
            gain,
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

    /// Predicts from `text` and its extracted feature vector.
    pub fn predict_features(&self, text: &str, x: &SparseFeatures) -> Prediction {
        let mut z: Vec<f32> = self
            .task_weights
            .chunks_exact(DIM)
            .zip(&self.task_bias)
            .map(|(row, b)| (x.dot(row) + b) / self.task_temperature)
            .collect();
        softmax_in_place(&mut z);
        let (needs_strong, quality) = self.gain.predict(&signal::extract(text, x));
        Prediction {
            task_probs: self.tasks.iter().copied().zip(z).collect(),
            needs_strong,
            quality,
        }
    }

    /// Extracts the features of `text` and predicts.
    pub fn predict(&self, text: &str) -> Prediction {
        self.predict_features(text, &features::extract(text))
    }

    /// The wire answer for a prediction.
    pub fn response(&self, p: &Prediction) -> ClassifyResponse {
        let (task, task_confidence) = p.top_task();
        ClassifyResponse {
            task,
            difficulty: p.difficulty(self.thresholds),
            confidence: round3(p.confidence()),
            task_confidence: Some(round3(task_confidence)),
            // Unrounded: thresholds placed at quantiles of recent scores need
            // the full resolution.
            needs_strong: Some(p.needs_strong),
            quality_weak: p.quality.map(|q| q.weak),
            quality_strong: p.quality.map(|q| q.strong),
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
