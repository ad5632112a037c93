//! Embedding one sentence and a batch of 32, each beside tokenisation alone (the part of the
//! work that is not the forward pass), in the same run.
//!
//! Needs the model: `scripts/fetch-model.sh`, or `MINILM_MODEL_DIR`.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    missing_docs,
    reason = "a benchmark fails loudly at the first surprise; criterion_main! defines an undocumented main"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minilm::MiniLm;

fn model_dir() -> PathBuf {
    std::env::var_os("MINILM_MODEL_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions/embed/assets/model")
        })
}

fn sentences() -> Vec<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/minilm/sentences.txt");
    std::fs::read_to_string(path)
        .expect("tests/fixtures/minilm/sentences.txt")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = model_dir();
    let model = MiniLm::load(&dir)
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-model.sh or set MINILM_MODEL_DIR"));
    let sentences = sentences();
    let one = [sentences[0].as_str()];
    let batch: Vec<&str> = sentences.iter().take(32).map(String::as_str).collect();

    let mut group = c.benchmark_group("single sentence");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tokenise only", |b| {
        b.iter(|| model.token_counts(black_box(&one)).unwrap())
    });
    group.bench_function("embed", |b| {
        b.iter(|| model.embed(black_box(&one)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("batch of 32");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("tokenise only", |b| {
        b.iter(|| model.token_counts(black_box(&batch)).unwrap())
    });
    group.bench_function("embed", |b| {
        b.iter(|| model.embed(black_box(&batch)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
