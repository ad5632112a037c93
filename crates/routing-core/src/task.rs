//! The four tasks a caller can declare.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What the caller wants done. Callers declare it; when they do not, the
/// classify function decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Turn text into vectors.
    Embed,
    /// Label a text (intent, sentiment, category) with a short answer.
    Classify,
    /// Produce text.
    Generate,
    /// Multi-step reasoning that wants the strongest model allowed.
    Reason,
}

impl Task {
    /// Every task, in a stable order (used for metrics and tests).
    pub const ALL: [Task; 4] = [Task::Embed, Task::Classify, Task::Generate, Task::Reason];

    /// The lower-case wire name, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Embed => "embed",
            Task::Classify => "classify",
            Task::Generate => "generate",
            Task::Reason => "reason",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `embed`, `classify`, `generate`, `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task {0:?}: expected one of embed, classify, generate, reason")]
pub struct UnknownTask(pub String);

impl FromStr for Task {
    type Err = UnknownTask;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTask(s.to_owned()))
    }
}

/// How hard a prompt is, as judged by the classify function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// A small model answers it well.
    Simple,
    /// A mid-size model is the safe choice.
    Medium,
    /// Wants the strongest model the constraints allow.
    Hard,
}

impl Difficulty {
    /// The lower-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Difficulty::Simple => "simple",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_round_trip_through_from_str_and_serde() {
        for task in Task::ALL {
            assert_eq!(task.as_str().parse::<Task>(), Ok(task));
            let json = serde_json::to_string(&task).unwrap();
            assert_eq!(json, format!("\"{}\"", task.as_str()));
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
        }
    }

    #[test]
    fn unknown_task_names_the_input() {
        let err = "summarise".parse::<Task>().unwrap_err();
        assert!(err.to_string().contains("\"summarise\""));
    }
}
