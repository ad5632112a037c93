//! The hand-weighted heuristic the trained model replaced: guesses the task
//! and difficulty from word cues and structure with fixed weights.
//!
//! It answers only when the trained model cannot be loaded, and serves as the
//! baseline in the evaluation and the benchmark. Scores are sums of fixed cue
//! weights; the confidence is low when the two best tasks score alike or the
//! difficulty score sits near a tier boundary.

use crate::api::ClassifyResponse;
use crate::task::{Difficulty, Task};

const CLASSIFY_CUES: &[&str] = &[
    "classify",
    "categorize",
    "categorise",
    "category",
    "label",
    "sentiment",
    "intent",
    "is this spam",
    "which of the following",
    "tag this",
];
const REASON_CUES: &[&str] = &[
    "prove",
    "proof",
    "derive",
    "step by step",
    "why",
    "explain",
    "analyze",
    "analyse",
    "compare",
    "trade-off",
    "tradeoff",
    "evaluate",
    "design",
    "optimal",
    "algorithm",
    "complexity",
    "theorem",
    "calculate",
    "solve",
];
const SIMPLE_CUES: &[&str] = &[
    "simple terms",
    "briefly",
    "in one sentence",
    "short",
    "quick",
    "eli5",
    "tl;dr",
];
const MATH_MARKERS: &[&str] = &[
    "integral",
    "equation",
    "matrix",
    "probability",
    "lemma",
    "=",
    "^",
    "√",
    "∑",
    "∫",
];

/// Difficulty scores below this are simple.
const MEDIUM_FROM: f32 = 1.2;
/// Difficulty scores from this on are hard.
const HARD_FROM: f32 = 2.4;

/// Structural and lexical features of a prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Whitespace-separated words.
    pub words: usize,
    /// Question marks.
    pub questions: usize,
    /// Contains a fenced code block or code-like punctuation.
    pub code: bool,
    /// Contains mathematical notation or vocabulary.
    pub math: bool,
    /// Classification cue hits.
    pub classify_cues: usize,
    /// Reasoning cue hits.
    pub reason_cues: usize,
    /// "Keep it simple" cue hits.
    pub simple_cues: usize,
}

impl Features {
    /// Extracts features from a prompt.
    pub fn of(text: &str) -> Self {
        let lower = text.to_lowercase();
        let count = |cues: &[&str]| cues.iter().filter(|c| lower.contains(*c)).count();
        Self {
            words: text.split_whitespace().count(),
            questions: text.matches('?').count(),
            code: text.contains("```")
                || ["fn ", "def ", "class ", "{", "};", "=>", "#include"]
                    .iter()
                    .filter(|m| text.contains(*m))
                    .count()
                    >= 2,
            math: count(MATH_MARKERS) > 0 && text.chars().any(|c| c.is_ascii_digit())
                || ["integral", "theorem", "lemma", "equation"]
                    .iter()
                    .any(|m| lower.contains(m)),
            classify_cues: count(CLASSIFY_CUES),
            reason_cues: count(REASON_CUES),
            simple_cues: count(SIMPLE_CUES),
        }
    }
}

/// Classifies a prompt with the fixed weights.
pub fn classify(text: &str) -> ClassifyResponse {
    let f = Features::of(text);
    let classify_score = 1.5 * f.classify_cues as f32;
    let reason_score = 0.9 * f.reason_cues as f32 + if f.math { 1.0 } else { 0.0 };
    let generate_score = 1.0;
    let mut scores = [
        (Task::Classify, classify_score),
        (Task::Reason, reason_score),
        (Task::Generate, generate_score),
    ];
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (task, best) = scores[0];
    let second = scores[1].1;
    // Margin between the two best tasks mapped to (0.5, 1).
    let task_confidence = 1.0 / (1.0 + (-(best - second) * 2.0).exp());

    let difficulty_score = (f.words.max(1) as f32).ln() * 0.35
        + if f.code { 1.0 } else { 0.0 }
        + if f.math { 1.0 } else { 0.0 }
        + 0.6 * f.reason_cues as f32
        + if f.questions > 1 { 0.4 } else { 0.0 }
        - 0.8 * f.simple_cues as f32;
    let difficulty = if difficulty_score < MEDIUM_FROM {
        Difficulty::Simple
    } else if difficulty_score < HARD_FROM {
        Difficulty::Medium
    } else {
        Difficulty::Hard
    };
    let boundary_distance = (difficulty_score - MEDIUM_FROM)
        .abs()
        .min((difficulty_score - HARD_FROM).abs());
    // Near a boundary the tier is a coin toss; far from both it is sure.
    let difficulty_confidence = 0.5 + 0.5 * (boundary_distance / 0.8).min(1.0);
    let confidence = (task_confidence * difficulty_confidence).clamp(0.0, 1.0);
    ClassifyResponse {
        task,
        difficulty,
        confidence: (confidence * 1000.0).round() / 1000.0,
        task_confidence: None,
        needs_strong: None,
        quality_weak: None,
        quality_strong: None,
        method: Some("heuristic".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn obvious_prompts_get_the_obvious_task() {
        assert_eq!(
            classify("Classify the sentiment of this review: great phone").task,
            Task::Classify
        );
        assert_eq!(
            classify("Prove that the square root of 2 is irrational, step by step").task,
            Task::Reason
        );
        assert_eq!(classify("Write a haiku about autumn").task, Task::Generate);
    }

    #[test]
    fn difficulty_grows_with_structure() {
        assert_eq!(classify("hi").difficulty, Difficulty::Simple);
        let hard = "Prove the theorem: for every integer n > 1, the equation x^n + y^n = z^n has no solutions. \
                    Derive it step by step and analyze the complexity of each step. Why does it hold?";
        assert_eq!(classify(hard).difficulty, Difficulty::Hard);
    }

    #[test]
    fn an_ambiguous_prompt_is_less_certain_than_a_clear_one() {
        let ambiguous = classify("explain this system design in simple terms");
        let clear = classify("Write a haiku about autumn");
        assert!(
            ambiguous.confidence < clear.confidence,
            "{ambiguous:?} vs {clear:?}"
        );
        assert!(ambiguous.confidence < 0.6, "{ambiguous:?}");
    }

    proptest! {
        #[test]
        fn any_text_gets_a_confidence_in_range(text in ".{0,400}") {
            let c = classify(&text);
            prop_assert!((0.0..=1.0).contains(&c.confidence));
            prop_assert!(c.task != Task::Embed);
        }
    }
}
