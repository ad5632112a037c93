//! Classification cost per prompt, with its parts side by side in one run:
//! feature extraction alone (the baseline every model pays), the model's
//! prediction from text, the full `classify` answer, and the old hand-weighted
//! heuristic. Each benchmark handles one prompt per iteration, so criterion's
//! time is the cost per prompt.
//!
//! `cargo bench -p routing-core --bench classify`
#![expect(
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly at the first surprise; criterion_main! defines an undocumented main"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use routing_core::classifier::{self, features, lexical};

fn prompts() -> Vec<(&'static str, String)> {
    let mmlu =
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n\
                A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
            .to_owned();
    let paragraph = "The committee reviewed the quarterly figures, the hiring plan and the \
                     risks raised by the audit, and asked for a revised budget by Friday. ";
    vec![
        ("query_30b", "I am still waiting on my card?".to_owned()),
        ("mmlu_120b", mmlu),
        (
            "instruction_1kb",
            format!(
                "Summarise the following notes for the board in five bullet points.\n\n{}",
                paragraph.repeat(6)
            ),
        ),
        // Longer than the extractor's window: the cost stops growing here.
        ("document_64kb", paragraph.repeat(400)),
    ]
}

fn bench(c: &mut Criterion) {
    let model = classifier::default_model().expect("the compiled-in model loads");
    for (name, text) in prompts() {
        let mut g = c.benchmark_group(format!("classify/{name}"));
        g.bench_function("features_only", |b| {
            b.iter(|| features::extract(black_box(&text)))
        });
        g.bench_function("model_predict", |b| {
            b.iter(|| model.predict(black_box(&text)))
        });
        g.bench_function("classify", |b| {
            b.iter(|| classifier::classify(black_box(&text)))
        });
        g.bench_function("heuristic", |b| {
            b.iter(|| lexical::classify(black_box(&text)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
