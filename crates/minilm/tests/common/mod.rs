//! What the model's tests share: the model directory and the reference fixture.
#![expect(
    clippy::expect_used,
    reason = "test code fails loudly at the first surprise"
)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use minilm::MiniLm;

/// The repository's root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model directory: `MINILM_MODEL_DIR` when set, else the embed function's
/// `assets/model`, fetched there by `scripts/fetch-model.sh` when missing (the script checks the
/// files' hashes and does nothing when they are already in place).
pub(crate) fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MINILM_MODEL_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
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

/// The model, loaded once per test binary.
pub(crate) fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| MiniLm::load(model_dir()).expect("load the model"))
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

/// The largest element-wise difference.
pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
