//! Truncation, padding and input handling, on the real model.
#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

mod common;

use common::{cosine, max_abs_diff, model, model_dir};
use minilm::{DIMENSIONS, Error, MAX_TOKENS, MiniLm};

/// `n` words, each one word piece in this vocabulary.
fn words(n: usize) -> String {
    const WORDS: [&str; 12] = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "home",
    ];
    (0..n)
        .map(|i| WORDS[i % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

const TAIL: &str = "quantum chromodynamics explains why protons hold together";

fn one(text: &str) -> Vec<f32> {
    model().embed(&[text]).unwrap().remove(0)
}

#[test]
fn texts_are_cut_at_256_word_pieces_special_tokens_included() {
    let m = model();
    let prefix = words(MAX_TOKENS - 2);
    assert_eq!(m.token_count(&prefix).unwrap(), MAX_TOKENS);
    assert_eq!(m.token_count(&words(1000)).unwrap(), MAX_TOKENS);
    assert_eq!(m.token_count("the cat").unwrap(), 4);

    // Past the cut, a tail changes nothing...
    let cut = one(&format!("{prefix} {TAIL}"));
    let c = cosine(&cut, &one(&prefix));
    assert!(c > 0.999_999, "cosine {c}");
    // ...while before it the same tail changes the vector.
    let short = words(40);
    let c = cosine(&one(&format!("{short} {TAIL}")), &one(&short));
    assert!(c < 0.99, "cosine {c}");
}

#[test]
fn a_text_alone_equals_the_same_text_padded_in_a_batch_of_longer_ones() {
    let short = "how do i reset my card pin";
    let long = format!("{} {TAIL}", words(180));
    let medium = words(30);
    let batch = model().embed(&[&long, short, &medium]).unwrap();
    let alone = [one(&long), one(short), one(&medium)];
    for (b, a) in batch.iter().zip(&alone) {
        let d = max_abs_diff(b, a);
        assert!(d < 1e-5, "max abs diff {d}");
    }
    // The batch kept the order of its texts.
    assert!(cosine(&batch[1], &alone[0]) < 0.9);
}

#[test]
fn vectors_are_unit_length_and_deterministic() {
    let texts = ["my card was declined", "what is the weather in paris", " "];
    let first = model().embed(&texts).unwrap();
    let second = model().embed(&texts).unwrap();
    assert_eq!(first, second);
    for v in &first {
        assert_eq!(v.len(), DIMENSIONS);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let with_counts = model().embed_with_counts(&texts).unwrap();
    assert_eq!(with_counts.vectors, first);
    assert_eq!(with_counts.token_counts, vec![6, 8, 2]);
    assert_eq!(with_counts.total_tokens(), 16);
}

#[test]
fn empty_texts_are_refused_and_an_empty_batch_gives_nothing() {
    let m = model();
    assert!(matches!(m.embed(&[""]), Err(Error::EmptyText { index: 0 })));
    assert!(matches!(
        m.embed(&["fine", ""]),
        Err(Error::EmptyText { index: 1 })
    ));
    assert_eq!(m.embed(&[]).unwrap(), Vec::<Vec<f32>>::new());
}

#[test]
fn odd_and_huge_texts_embed_without_failing() {
    let huge = "word ".repeat(50_000);
    let odd = "\u{0}\u{7}\u{fffd} 🙂 中文 ﬁ Ω̈ \t\r\n";
    let vectors = model().embed(&[&huge, odd]).unwrap();
    for v in &vectors {
        assert!(v.iter().all(|x| x.is_finite()));
    }
    assert_eq!(model().token_count(&huge).unwrap(), MAX_TOKENS);
}

#[test]
fn many_texts_in_one_call_match_one_at_a_time() {
    let texts: Vec<String> = (0..300)
        .map(|i| format!("{} number {i}", words(1 + i % 60)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = model().embed(&refs).unwrap();
    assert_eq!(batch.len(), 300);
    for i in [0, 1, 59, 150, 299] {
        let d = max_abs_diff(&batch[i], &one(refs[i]));
        assert!(d < 1e-5, "text {i}: max abs diff {d}");
    }
}

#[test]
fn a_directory_without_the_model_is_an_error() {
    let empty = std::env::temp_dir().join(format!("minilm-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let err = MiniLm::load(&empty).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    // Right config and tokenizer, broken weights.
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(file), empty.join(file)).unwrap();
    }
    std::fs::write(empty.join("model.safetensors"), b"not safetensors").unwrap();
    let err = MiniLm::load(&empty).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err}");

    // A tokenizer that is not JSON.
    std::fs::write(empty.join("tokenizer.json"), b"{").unwrap();
    let err = MiniLm::load(&empty).unwrap_err();
    assert!(matches!(err, Error::Tokenizer(_)), "{err}");
    std::fs::remove_dir_all(&empty).unwrap();
}
