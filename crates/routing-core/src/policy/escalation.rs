//! Cheap-first escalation: the checks that decide whether a cheap model's
//! answer is good enough or the request goes to a stronger model.

use serde::{Deserialize, Serialize};

use crate::chat::FinishReason;

/// When an answer fails and the request is escalated (the policy file's
/// `[escalation.NAME]` tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationCheck {
    /// Escalate an answer that is empty or only whitespace.
    pub empty: bool,
    /// Escalate an answer cut off by the token limit (`finish_reason = length`).
    pub truncated: bool,
    /// Escalate a provider-reported refusal or a refusal phrase.
    pub refusal: bool,
    /// Escalate an answer blocked by the provider's content filter.
    pub content_filter: bool,
    /// Phrases (case-insensitive) that mark a refusal when they occur in the
    /// first `refusal_scan_chars` characters.
    pub refusal_phrases: Vec<String>,
    /// How many leading characters are scanned for refusal phrases.
    pub refusal_scan_chars: usize,
    /// Phrases (case-insensitive, anywhere) that mark a low-confidence answer.
    pub low_confidence_phrases: Vec<String>,
    /// Answers shorter than this many characters (trimmed) count as empty.
    pub min_chars: usize,
}

impl Default for EscalationCheck {
    fn default() -> Self {
        Self {
            empty: true,
            truncated: true,
            refusal: true,
            content_filter: false,
            refusal_phrases: [
                "i can't help with",
                "i cannot help with",
                "i can't assist",
                "i cannot assist",
                "i'm unable to",
                "i am unable to",
                "i'm sorry, but i can't",
                "i'm sorry, but i cannot",
                "as an ai language model",
            ]
            .map(str::to_owned)
            .to_vec(),
            refusal_scan_chars: 200,
            low_confidence_phrases: [
                "i'm not sure",
                "i am not sure",
                "i'm not certain",
                "i am not certain",
                "i don't know",
                "i do not know",
            ]
            .map(str::to_owned)
            .to_vec(),
            min_chars: 1,
        }
    }
}

/// Why an answer was escalated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EscalationReason {
    /// Nothing (or too little) came back.
    Empty,
    /// The answer hit the token limit.
    Truncated,
    /// The model refused.
    Refusal {
        /// The matched phrase, or `finish_reason` when the provider said so.
        phrase: String,
    },
    /// The provider's content filter blocked the answer.
    ContentFilter,
    /// The answer hedges.
    LowConfidence {
        /// The matched phrase.
        phrase: String,
    },
}

impl std::fmt::Display for EscalationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EscalationReason::Empty => f.write_str("the answer was empty"),
            EscalationReason::Truncated => f.write_str("the answer was cut off by the token limit"),
            EscalationReason::Refusal { phrase } => write!(f, "the model refused ({phrase:?})"),
            EscalationReason::ContentFilter => f.write_str("the content filter blocked the answer"),
            EscalationReason::LowConfidence { phrase } => {
                write!(f, "the answer hedged ({phrase:?})")
            }
        }
    }
}

/// Whether an answer fails `check`, and why (the first failing test, in the
/// order: content filter, refusal, empty, truncated, low confidence).
pub fn needs_escalation(
    check: &EscalationCheck,
    text: &str,
    finish_reason: FinishReason,
) -> Option<EscalationReason> {
    if check.content_filter && finish_reason == FinishReason::ContentFilter {
        return Some(EscalationReason::ContentFilter);
    }
    if check.refusal && finish_reason == FinishReason::Refusal {
        return Some(EscalationReason::Refusal {
            phrase: "finish_reason".to_owned(),
        });
    }
    let trimmed = text.trim();
    if check.empty && trimmed.chars().count() < check.min_chars.max(1) {
        return Some(EscalationReason::Empty);
    }
    if check.truncated && finish_reason == FinishReason::Length {
        return Some(EscalationReason::Truncated);
    }
    let lower = normalise(trimmed);
    if check.refusal {
        let head: String = lower.chars().take(check.refusal_scan_chars).collect();
        if let Some(phrase) = check
            .refusal_phrases
            .iter()
            .find(|p| !p.is_empty() && head.contains(&normalise(p)))
        {
            return Some(EscalationReason::Refusal {
                phrase: phrase.clone(),
            });
        }
    }
    check
        .low_confidence_phrases
        .iter()
        .find(|p| !p.is_empty() && lower.contains(&normalise(p)))
        .map(|phrase| EscalationReason::LowConfidence {
            phrase: phrase.clone(),
        })
}

/// Lower case with typographic apostrophes made plain, so "I’m" matches "i'm".
fn normalise(text: &str) -> String {
    text.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'")
}
