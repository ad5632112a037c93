//! The prompt signal behind `needs_strong`: a handful of length and
//! structure measurements that carry over between kinds of prompts.
//!
//! The difficulty head is a logistic regression over these values only, not
//! over the hashed n-grams of [`features`](super::features): trained and
//! judged leave-one-source-out (train on every labelled source but one, score
//! the one left out), word and n-gram features learnt which dataset a prompt
//! came from and did worse on unseen sources than prompt length alone, while
//! length with a few structural counts did better (see
//! `models/classifier-report.md`).
//!
//! Most values are read off the dense part of the feature vector already
//! extracted for the task head; the digit and constraint counts are taken
//! over the same bounded window of the text, so the cost stays bounded for
//! any prompt size. `scripts/train-classifier.py` reads the values from the
//! `classifier-features signal` example: one implementation for training and
//! serving.

use super::features::{self, DENSE_NAMES, SparseFeatures};

/// Version of the signal definition; bump it whenever a value changes.
pub const SIGNAL_VERSION: u32 = 1;

/// Knots of the piecewise-linear length terms, on the `log_bytes` scale
/// (`ln(1 + bytes) / 8`): about 24, 81, 270 and 900 bytes.
pub const LENGTH_KNOTS: [f32; 4] = [0.40, 0.55, 0.70, 0.85];

/// Names of the signal values, in vector order.
pub const SIGNAL_NAMES: [&str; 13] = [
    "log_bytes",
    "log_bytes_over_0.40",
    "log_bytes_over_0.55",
    "log_bytes_over_0.70",
    "log_bytes_over_0.85",
    "log_lines",
    "log_code_marks",
    "log_math_marks",
    "has_latex",
    "log_digits",
    "log_constraint_cues",
    "log_option_lines",
    "has_answer_cue",
];

/// Number of signal values.
pub const SIGNAL_DIM: usize = SIGNAL_NAMES.len();

/// Words that state a constraint on the answer (its length, form, content or
/// style), as instruction-following prompts pile them up.
const CONSTRAINT_WORDS: &[&str] = &[
    "avoid",
    "bullet",
    "bullets",
    "each",
    "ensure",
    "every",
    "exactly",
    "format",
    "include",
    "includes",
    "including",
    "json",
    "limit",
    "maximum",
    "minimum",
    "must",
    "only",
    "paragraphs",
    "sentences",
    "should",
    "style",
    "table",
    "tone",
    "without",
    "words",
];

/// Word pairs that state a constraint ("don't" reads as `don t`).
const CONSTRAINT_PAIRS: &[(&str, &str)] = &[
    ("at", "least"),
    ("at", "most"),
    ("do", "not"),
    ("don", "t"),
    ("no", "more"),
    ("no", "less"),
];

fn dense_index(name: &str) -> usize {
    DENSE_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or(usize::MAX)
}

/// The value of dense feature `index` in `x` (zero when not stored).
fn dense_value(x: &SparseFeatures, index: usize) -> f32 {
    // Dense features come first and indices are sorted: a short scan.
    x.iter()
        .take_while(|(i, _)| *i <= index)
        .find(|(i, _)| *i == index)
        .map_or(0.0, |(_, v)| v)
}

/// Digits and constraint cues in one part of the text.
fn count_part(part: &str, digits: &mut usize, cues: &mut usize) {
    *digits += part.bytes().filter(u8::is_ascii_digit).count();
    let lower = part.to_lowercase();
    let mut previous: Option<&str> = None;
    for token in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        if CONSTRAINT_WORDS.binary_search(&token).is_ok() {
            *cues += 1;
        }
        if let Some(p) = previous
            && CONSTRAINT_PAIRS.contains(&(p, token))
        {
            *cues += 1;
        }
        previous = Some(token);
    }
}

/// The signal of `text`, given its feature vector `x` (from
/// [`features::extract`] of the same text). Always finite.
pub fn extract(text: &str, x: &SparseFeatures) -> [f32; SIGNAL_DIM] {
    let dense = |name: &str| dense_value(x, dense_index(name));
    let log_bytes = dense("log_bytes");
    let (head, tail) = features::window(text);
    let (mut digits, mut cues) = (0usize, 0usize);
    count_part(head, &mut digits, &mut cues);
    count_part(tail, &mut digits, &mut cues);
    let hinge = |k: f32| (log_bytes - k).max(0.0);
    [
        log_bytes,
        hinge(LENGTH_KNOTS[0]),
        hinge(LENGTH_KNOTS[1]),
        hinge(LENGTH_KNOTS[2]),
        hinge(LENGTH_KNOTS[3]),
        dense("log_lines"),
        dense("log_code_marks"),
        dense("log_math_marks"),
        dense("has_latex"),
        (digits as f32).ln_1p(),
        (cues as f32).ln_1p(),
        dense("log_option_lines"),
        dense("has_answer_cue"),
    ]
}

/// The signal of `text`, extracting its features first.
pub fn extract_text(text: &str) -> [f32; SIGNAL_DIM] {
    extract(text, &features::extract(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> f32 {
        let at = SIGNAL_NAMES.iter().position(|n| *n == name).unwrap();
        extract_text(text)[at]
    }

    /// Dense features copied as they are.
    const COPIED: [&str; 7] = [
        "log_bytes",
        "log_lines",
        "log_code_marks",
        "log_math_marks",
        "has_latex",
        "log_option_lines",
        "has_answer_cue",
    ];

    #[test]
    fn copied_names_are_dense_features_and_signal_names() {
        for name in COPIED {
            assert!(DENSE_NAMES.contains(&name), "{name}");
            assert!(SIGNAL_NAMES.contains(&name), "{name}");
        }
        assert!(CONSTRAINT_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn counts_see_what_they_name() {
        assert_eq!(value("no numbers", "log_digits"), 0.0);
        assert!((value("room 1234", "log_digits") - 4f32.ln_1p()).abs() < 1e-6);
        let constrained =
            "Write exactly three sentences. Do not use commas; at least one must rhyme.";
        assert!((value(constrained, "log_constraint_cues") - 5f32.ln_1p()).abs() < 1e-6);
        assert_eq!(value("hi", "log_bytes_over_0.40"), 0.0);
        let long = "word ".repeat(400);
        let lb = value(&long, "log_bytes");
        assert!((value(&long, "log_bytes_over_0.85") - (lb - 0.85)).abs() < 1e-6);
        assert_eq!(value("Which?\nA. 1\nB. 2\nAnswer:", "has_answer_cue"), 1.0);
    }

    #[test]
    fn any_text_gives_finite_values() {
        for text in ["", " ", "東京 ∑ √x", &"9".repeat(100_000)] {
            assert!(extract_text(text).iter().all(|v| v.is_finite()));
        }
    }
}
