//! What the embed tests share: the model folder, the reference fixture, cosine.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use fleet_tests::repo_root;

/// The model folder, absolute: `MINILM_MODEL_DIR` when set, else the embed function's
/// `assets/model`, which `scripts/fetch-model.sh` fills (and checks) when needed.
pub(crate) fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MINILM_MODEL_DIR").filter(|d| !d.is_empty()) {
            return std::path::absolute(PathBuf::from(dir)).expect("absolute model dir");
        }
        let root = repo_root();
        let dest = root.join("functions/embed/assets/model");
        let status = Command::new("bash")
            .arg(root.join("scripts/fetch-model.sh"))
            .arg(&dest)
            .status()
            .expect("run scripts/fetch-model.sh");
        assert!(status.success(), "scripts/fetch-model.sh failed: {status}");
        dest
    })
    .clone()
}

/// The 64 reference sentences and their sentence-transformers vectors.
pub(crate) fn reference() -> (Vec<String>, Vec<Vec<f32>>) {
    let dir = repo_root().join("tests/fixtures/minilm");
    let sentences: Vec<String> = std::fs::read_to_string(dir.join("sentences.txt"))
        .expect("sentences.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(
        &std::fs::read(dir.join("sentence_transformers_vectors.json")).expect("vectors"),
    )
    .expect("vectors are JSON");
    assert_eq!(sentences.len(), vectors.len());
    (sentences, vectors)
}

/// A JSON array of numbers as a vector.
pub(crate) fn vector(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Cosine of two vectors.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Asserts each vector has cosine ≥ 0.9999 with its reference.
pub(crate) fn assert_matches_reference(got: &[Vec<f32>], expected: &[Vec<f32>]) {
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.len(), 384, "vector {i}");
        let c = cosine(g, e);
        assert!(c >= 0.9999, "vector {i}: cosine {c} with the reference");
    }
}
