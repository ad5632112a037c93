//! Nearest-exemplar votes: labelled example prompts, embedded by the embed
//! function, vote on the task of a prompt by cosine similarity, and the vote is
//! blended into the lexical model's task probabilities.
//!
//! This module holds the pure parts (exemplars, configuration, the index, the
//! vote and the blend); the classify function does the embedding calls and
//! falls back to the lexical model alone when they are slow or fail.
//!
//! Configuration, all optional:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CLASSIFIER_EXEMPLARS` | `off` disables exemplar votes | on |
//! | `CLASSIFIER_EXEMPLARS_PATH` | JSON exemplar file (see [`parse_exemplars`]) | compiled-in `models/exemplars.json` |
//! | `CLASSIFIER_EXEMPLAR_K` | neighbours that vote | 7 |
//! | `CLASSIFIER_EXEMPLAR_MIN_SIMILARITY` | neighbours below this cosine do not vote | 0.35 |
//! | `CLASSIFIER_EXEMPLAR_WEIGHT` | the vote's largest share of the blend | 0.5 |
//! | `CLASSIFIER_EXEMPLAR_MIN_BUDGET_MS` | only callers with at least this `max_latency_ms` get a vote | 250 |
//! | `CLASSIFIER_EXEMPLAR_TIMEOUT_MS` | the longest wait for the embed function (also at most a quarter of the budget) | 80 |
//! | `CLASSIFIER_EXEMPLAR_BELOW_CONFIDENCE` | only prompts the lexical model is less sure of get a vote | 0.9 |

use std::time::Duration;

use serde::Deserialize;

use super::model::Prediction;
use crate::env::{Env, EnvError};
use crate::task::Task;

/// The compiled-in exemplar file.
pub const DEFAULT_EXEMPLARS_JSON: &str = include_str!("../../models/exemplars.json");

/// `CLASSIFIER_EXEMPLARS`: `off` disables exemplar votes.
pub const ENV_EXEMPLARS: &str = "CLASSIFIER_EXEMPLARS";
/// `CLASSIFIER_EXEMPLARS_PATH`: an exemplar file replacing the compiled-in one.
pub const ENV_EXEMPLARS_PATH: &str = "CLASSIFIER_EXEMPLARS_PATH";
/// `CLASSIFIER_EXEMPLAR_K`.
pub const ENV_K: &str = "CLASSIFIER_EXEMPLAR_K";
/// `CLASSIFIER_EXEMPLAR_MIN_SIMILARITY`.
pub const ENV_MIN_SIMILARITY: &str = "CLASSIFIER_EXEMPLAR_MIN_SIMILARITY";
/// `CLASSIFIER_EXEMPLAR_WEIGHT`.
pub const ENV_WEIGHT: &str = "CLASSIFIER_EXEMPLAR_WEIGHT";
/// `CLASSIFIER_EXEMPLAR_MIN_BUDGET_MS`.
pub const ENV_MIN_BUDGET_MS: &str = "CLASSIFIER_EXEMPLAR_MIN_BUDGET_MS";
/// `CLASSIFIER_EXEMPLAR_TIMEOUT_MS`.
pub const ENV_TIMEOUT_MS: &str = "CLASSIFIER_EXEMPLAR_TIMEOUT_MS";
/// `CLASSIFIER_EXEMPLAR_BELOW_CONFIDENCE`.
pub const ENV_BELOW_CONFIDENCE: &str = "CLASSIFIER_EXEMPLAR_BELOW_CONFIDENCE";

/// A labelled example prompt.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemplar {
    /// The prompt.
    pub text: String,
    /// The task it asks for.
    pub task: Task,
}

#[derive(Deserialize)]
struct ExemplarFile {
    exemplars: Vec<Exemplar>,
}

/// An exemplar file or its vectors cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("exemplars: {0}")]
pub struct ExemplarError(pub String);

/// Parses an exemplar file: `{"exemplars": [{"text": "...", "task": "classify"}, ...]}`
/// (other top-level fields, such as provenance notes, are ignored). At least
/// one exemplar with a non-empty text is required.
pub fn parse_exemplars(json: &str) -> Result<Vec<Exemplar>, ExemplarError> {
    let file: ExemplarFile =
        serde_json::from_str(json).map_err(|e| ExemplarError(e.to_string()))?;
    if file.exemplars.is_empty() {
        return Err(ExemplarError("the file holds no exemplars".to_owned()));
    }
    if let Some(i) = file.exemplars.iter().position(|e| e.text.trim().is_empty()) {
        return Err(ExemplarError(format!("exemplar {i} has an empty text")));
    }
    Ok(file.exemplars)
}

/// When and how exemplar votes are used.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarConfig {
    /// Whether votes are used at all.
    pub enabled: bool,
    /// Neighbours that vote.
    pub k: usize,
    /// Neighbours less similar than this do not vote.
    pub min_similarity: f32,
    /// The vote's largest share of the blend, in `[0, 1]`.
    pub weight: f32,
    /// Callers with a smaller latency budget (or none) get no vote.
    pub min_budget_ms: u64,
    /// The longest wait for the embed function.
    pub timeout_ms: u64,
    /// Prompts the lexical model is at least this sure of get no vote.
    pub below_confidence: f32,
}

impl Default for ExemplarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            k: 7,
            min_similarity: 0.35,
            weight: 0.5,
            min_budget_ms: 250,
            timeout_ms: 80,
            below_confidence: 0.9,
        }
    }
}

fn unit_interval(name: &str, value: f32) -> Result<f32, EnvError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(EnvError {
            name: name.to_owned(),
            value: value.to_string(),
            reason: "expected a number from 0 to 1".to_owned(),
        })
    }
}

impl ExemplarConfig {
    /// Reads the `CLASSIFIER_EXEMPLAR*` variables (see the module doc).
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let d = Self::default();
        let enabled = match env.get(ENV_EXEMPLARS) {
            None | Some("on" | "true" | "1") => true,
            Some("off" | "false" | "0") => false,
            Some(other) => {
                return Err(EnvError {
                    name: ENV_EXEMPLARS.to_owned(),
                    value: other.to_owned(),
                    reason: "expected on or off".to_owned(),
                });
            }
        };
        let k: usize = env.parse_or(ENV_K, d.k)?;
        if k == 0 {
            return Err(EnvError {
                name: ENV_K.to_owned(),
                value: "0".to_owned(),
                reason: "at least one neighbour must vote".to_owned(),
            });
        }
        Ok(Self {
            enabled,
            k,
            min_similarity: unit_interval(
                ENV_MIN_SIMILARITY,
                env.parse_or(ENV_MIN_SIMILARITY, d.min_similarity)?,
            )?,
            weight: unit_interval(ENV_WEIGHT, env.parse_or(ENV_WEIGHT, d.weight)?)?,
            min_budget_ms: env.parse_or(ENV_MIN_BUDGET_MS, d.min_budget_ms)?,
            timeout_ms: env.parse_or(ENV_TIMEOUT_MS, d.timeout_ms)?,
            below_confidence: unit_interval(
                ENV_BELOW_CONFIDENCE,
                env.parse_or(ENV_BELOW_CONFIDENCE, d.below_confidence)?,
            )?,
        })
    }

    /// Why a prompt gets no vote, or how long its embedding may take: a vote
    /// needs votes enabled, a budget of at least `min_budget_ms`, and a
    /// lexical confidence below `below_confidence`; the wait is the smaller of
    /// `timeout_ms` and a quarter of the budget.
    pub fn plan(&self, max_latency_ms: Option<u64>, confidence: f32) -> Plan {
        if !self.enabled {
            return Plan::Skip("disabled");
        }
        let Some(budget) = max_latency_ms.filter(|b| *b >= self.min_budget_ms) else {
            return Plan::Skip("budget");
        };
        if confidence >= self.below_confidence {
            return Plan::Skip("confident");
        }
        let wait = self.timeout_ms.min(budget / 4);
        if wait == 0 {
            return Plan::Skip("budget");
        }
        Plan::Vote(Duration::from_millis(wait))
    }
}

/// What to do about exemplars for one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No vote, for the reason given (a metric label).
    Skip(&'static str),
    /// Ask for a vote, waiting at most this long for embeddings.
    Vote(Duration),
}

/// Exemplars with their unit-length embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarIndex {
    tasks: Vec<Task>,
    vectors: Vec<Vec<f32>>,
    dim: usize,
}

fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
}

impl ExemplarIndex {
    /// Pairs exemplars with their embeddings (same order, same count, one
    /// dimension, finite and non-zero).
    pub fn new(exemplars: &[Exemplar], vectors: &[Vec<f32>]) -> Result<Self, ExemplarError> {
        if exemplars.is_empty() || exemplars.len() != vectors.len() {
            return Err(ExemplarError(format!(
                "{} exemplars but {} vectors",
                exemplars.len(),
                vectors.len()
            )));
        }
        let dim = vectors[0].len();
        let mut units = Vec::with_capacity(vectors.len());
        for (i, v) in vectors.iter().enumerate() {
            if v.len() != dim || dim == 0 {
                return Err(ExemplarError(format!(
                    "vector {i} has {} dimensions; expected {dim}",
                    v.len()
                )));
            }
            units.push(
                normalised(v)
                    .ok_or_else(|| ExemplarError(format!("vector {i} is zero or not finite")))?,
            );
        }
        Ok(Self {
            tasks: exemplars.iter().map(|e| e.task).collect(),
            vectors: units,
            dim,
        })
    }

    /// Number of exemplars.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when there are no exemplars (never, once built).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The vote of the `k` most similar exemplars at or above
    /// `min_similarity`, each weighted by how far its cosine exceeds
    /// `min_similarity`; `None` when none qualifies or the query does not fit
    /// (wrong dimension, zero, not finite).
    pub fn vote(&self, query: &[f32], k: usize, min_similarity: f32) -> Option<Vote> {
        if query.len() != self.dim {
            return None;
        }
        let q = normalised(query)?;
        let mut sims: Vec<(f32, Task)> = self
            .vectors
            .iter()
            .zip(&self.tasks)
            .map(|(v, t)| (v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), *t))
            .filter(|(s, _)| s.is_finite() && *s >= min_similarity)
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        sims.truncate(k);
        let best_similarity = sims.first()?.0;
        // A small floor keeps a neighbour exactly at the threshold in the vote.
        let weights: Vec<(Task, f32)> = sims
            .iter()
            .map(|(s, t)| (*t, (s - min_similarity).max(0.0) + 1e-3))
            .collect();
        let total: f32 = weights.iter().map(|(_, w)| w).sum();
        let mut probs: Vec<(Task, f32)> = Vec::new();
        for (t, w) in weights {
            match probs.iter_mut().find(|(pt, _)| *pt == t) {
                Some(entry) => entry.1 += w / total,
                None => probs.push((t, w / total)),
            }
        }
        Some(Vote {
            probs,
            best_similarity,
            neighbours: sims.len(),
        })
    }
}

/// How the nearest exemplars voted.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// Share of the vote per task (only tasks that got votes); sums to 1.
    pub probs: Vec<(Task, f32)>,
    /// Cosine similarity of the nearest exemplar.
    pub best_similarity: f32,
    /// Exemplars that voted.
    pub neighbours: usize,
}

/// Blends a vote into a prediction: the vote's share grows from 0 at
/// `min_similarity` to `weight` for an identical exemplar. Only the model's
/// tasks count (votes for others are dropped and the rest renormalised); the
/// result's task probabilities still sum to 1 and `needs_strong` is kept.
pub fn blend(prediction: &Prediction, vote: &Vote, weight: f32, min_similarity: f32) -> Prediction {
    let in_model = |t: Task| prediction.task_probs.iter().any(|(pt, _)| *pt == t);
    let mass: f32 = vote
        .probs
        .iter()
        .filter(|(t, _)| in_model(*t))
        .map(|(_, p)| p)
        .sum();
    if mass.is_nan() || mass <= 0.0 {
        return prediction.clone();
    }
    let closeness = ((vote.best_similarity - min_similarity) / (1.0 - min_similarity).max(1e-6))
        .clamp(0.0, 1.0);
    let alpha = (weight.clamp(0.0, 1.0) * closeness).clamp(0.0, 1.0);
    let share = |t: Task| {
        vote.probs
            .iter()
            .find(|(vt, _)| *vt == t)
            .map_or(0.0, |(_, p)| p / mass)
    };
    Prediction {
        task_probs: prediction
            .task_probs
            .iter()
            .map(|(t, p)| (*t, (1.0 - alpha) * p + alpha * share(*t)))
            .collect(),
        needs_strong: prediction.needs_strong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ex(text: &str, task: Task) -> Exemplar {
        Exemplar {
            text: text.to_owned(),
            task,
        }
    }

    fn index() -> ExemplarIndex {
        ExemplarIndex::new(
            &[
                ex("label this", Task::Classify),
                ex("write a poem", Task::Generate),
                ex("prove it", Task::Reason),
            ],
            &[
                vec![1.0, 0.0, 0.0],
                vec![0.0, 2.0, 0.0],
                vec![0.0, 0.0, 3.0],
            ],
        )
        .unwrap()
    }

    fn even() -> Prediction {
        Prediction {
            task_probs: vec![
                (Task::Classify, 1.0 / 3.0),
                (Task::Generate, 1.0 / 3.0),
                (Task::Reason, 1.0 / 3.0),
            ],
            needs_strong: 0.2,
        }
    }

    #[test]
    fn the_compiled_in_exemplars_parse_and_cover_every_model_task() {
        let exemplars = parse_exemplars(DEFAULT_EXEMPLARS_JSON).unwrap();
        for task in [Task::Classify, Task::Generate, Task::Reason] {
            assert!(
                exemplars.iter().filter(|e| e.task == task).count() >= 5,
                "too few {task} exemplars"
            );
        }
    }

    #[test]
    fn bad_exemplar_files_are_refused() {
        assert!(parse_exemplars("{}").is_err());
        assert!(parse_exemplars(r#"{"exemplars":[]}"#).is_err());
        assert!(parse_exemplars(r#"{"exemplars":[{"text":" ","task":"reason"}]}"#).is_err());
        assert!(parse_exemplars(r#"{"exemplars":[{"text":"x","task":"dance"}]}"#).is_err());
    }

    #[test]
    fn mismatched_vectors_are_refused() {
        let e = [ex("a", Task::Reason), ex("b", Task::Generate)];
        assert!(ExemplarIndex::new(&e, &[vec![1.0, 0.0]]).is_err());
        assert!(ExemplarIndex::new(&e, &[vec![1.0, 0.0], vec![1.0]]).is_err());
        assert!(ExemplarIndex::new(&e, &[vec![1.0, 0.0], vec![0.0, 0.0]]).is_err());
        assert!(ExemplarIndex::new(&e, &[vec![1.0, 0.0], vec![f32::NAN, 1.0]]).is_err());
    }

    #[test]
    fn the_nearest_exemplar_wins_and_far_ones_do_not_vote() {
        let vote = index().vote(&[0.1, 0.0, 0.9], 3, 0.35).unwrap();
        assert_eq!(vote.neighbours, 1, "{vote:?}");
        assert_eq!(vote.probs, vec![(Task::Reason, 1.0)]);
        assert!(index().vote(&[1.0, 1.0, 1.0], 3, 0.9).is_none());
        assert!(
            index().vote(&[1.0, 0.0], 3, 0.0).is_none(),
            "wrong dimension"
        );
        assert!(
            index().vote(&[0.0, 0.0, 0.0], 3, 0.0).is_none(),
            "zero query"
        );
    }

    #[test]
    fn a_close_vote_moves_the_prediction_and_a_marginal_one_barely() {
        let vote = index().vote(&[0.0, 0.0, 1.0], 3, 0.35).unwrap();
        let blended = blend(&even(), &vote, 0.5, 0.35);
        let reason = blended.task_probs[2].1;
        assert!((reason - (0.5 / 3.0 + 0.5)).abs() < 1e-5, "{blended:?}");
        assert_eq!(blended.needs_strong, 0.2);

        let marginal = Vote {
            probs: vec![(Task::Reason, 1.0)],
            best_similarity: 0.36,
            neighbours: 1,
        };
        let barely = blend(&even(), &marginal, 0.5, 0.35);
        assert!(barely.task_probs[2].1 < 1.0 / 3.0 + 0.02, "{barely:?}");
    }

    #[test]
    fn votes_for_tasks_outside_the_model_are_dropped() {
        let vote = Vote {
            probs: vec![(Task::Embed, 1.0)],
            best_similarity: 1.0,
            neighbours: 1,
        };
        assert_eq!(blend(&even(), &vote, 0.5, 0.35), even());
    }

    #[test]
    fn the_plan_respects_switch_budget_and_confidence() {
        let c = ExemplarConfig::default();
        assert_eq!(c.plan(None, 0.1), Plan::Skip("budget"));
        assert_eq!(c.plan(Some(c.min_budget_ms - 1), 0.1), Plan::Skip("budget"));
        assert_eq!(c.plan(Some(10_000), 0.95), Plan::Skip("confident"));
        assert_eq!(
            c.plan(Some(10_000), 0.1),
            Plan::Vote(Duration::from_millis(c.timeout_ms))
        );
        assert_eq!(
            c.plan(Some(c.min_budget_ms), 0.1),
            Plan::Vote(Duration::from_millis(c.timeout_ms.min(c.min_budget_ms / 4)))
        );
        let off = ExemplarConfig {
            enabled: false,
            ..c
        };
        assert_eq!(off.plan(Some(10_000), 0.1), Plan::Skip("disabled"));
    }

    #[test]
    fn configuration_comes_from_the_environment_and_is_checked() {
        let env = Env::from_pairs([(ENV_K, "3"), (ENV_WEIGHT, "0.25"), (ENV_EXEMPLARS, "off")]);
        let c = ExemplarConfig::from_env(&env).unwrap();
        assert_eq!((c.k, c.weight, c.enabled), (3, 0.25, false));
        for (name, value) in [
            (ENV_K, "0"),
            (ENV_WEIGHT, "1.5"),
            (ENV_MIN_SIMILARITY, "-0.1"),
            (ENV_EXEMPLARS, "maybe"),
            (ENV_TIMEOUT_MS, "soon"),
        ] {
            let err = ExemplarConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
        }
    }

    proptest! {
        #[test]
        fn blending_keeps_a_distribution(
            p in proptest::collection::vec(0.0f32..1.0, 3),
            v in proptest::collection::vec(0.0f32..1.0, 4),
            sim in -1.0f32..1.0,
            weight in 0.0f32..1.0,
        ) {
            let ps: f32 = p.iter().sum::<f32>() + 1e-3;
            let prediction = Prediction {
                task_probs: vec![
                    (Task::Classify, (p[0] + 1e-3 / 3.0) / ps),
                    (Task::Generate, (p[1] + 1e-3 / 3.0) / ps),
                    (Task::Reason, (p[2] + 1e-3 / 3.0) / ps),
                ],
                needs_strong: 0.5,
            };
            let vs: f32 = v.iter().sum::<f32>() + 1e-3;
            let vote = Vote {
                probs: Task::ALL.iter().zip(&v).map(|(t, x)| (*t, (x + 1e-3 / 4.0) / vs)).collect(),
                best_similarity: sim,
                neighbours: 4,
            };
            let b = blend(&prediction, &vote, weight, 0.35);
            let sum: f32 = b.task_probs.iter().map(|(_, p)| p).sum();
            prop_assert!((sum - 1.0).abs() < 1e-4, "{b:?}");
            prop_assert!(b.task_probs.iter().all(|(_, p)| (0.0..=1.0 + 1e-6).contains(p)));
        }
    }
}
