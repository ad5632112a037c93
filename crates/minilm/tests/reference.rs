//! The model's vectors against sentence-transformers' for the same sentences.

mod common;

use common::{cosine, max_abs_diff, model, reference};

#[test]
fn vectors_match_sentence_transformers() {
    let (sentences, expected) = reference();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let got = model().embed(&texts).unwrap();
    assert_eq!(got.len(), expected.len());
    let mut worst = (f64::INFINITY, 0f32, 0usize);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.len(), minilm::DIMENSIONS);
        let c = cosine(g, e);
        if c < worst.0 {
            worst = (c, max_abs_diff(g, e), i);
        }
        assert!(c >= 0.9999, "sentence {i} {:?}: cosine {c}", sentences[i]);
    }
    eprintln!(
        "lowest cosine {:.9} (max abs diff {:e}) at sentence {}",
        worst.0, worst.1, worst.2
    );
}
