//! `Policy::select` over the built-in catalogue and a synthetic 200-model
//! one.
#![expect(
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly at the first surprise; criterion_main! defines an undocumented main"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use routing_core::policy::{
    BudgetStore, BudgetTracker, BudgetView, LiveStats, Policy, SelectionInput,
};
use routing_core::{Difficulty, Task};

/// A policy with `n` models over four providers, half in-cluster, and rules
/// by difficulty over the whole catalogue.
fn synthetic(n: usize) -> String {
    let mut text = String::from(
        "version = 1\n\
         [[budgets.limit]]\ntenant = \"*\"\ndaily_usd = 100.0\n",
    );
    for i in 0..n {
        let q = (i % 97) as f64 / 100.0;
        text.push_str(&format!(
            "[[model]]\nid = \"m{i}\"\nprovider = \"p{}\"\nmodel = \"model-{i}\"\n\
             locality = \"{}\"\ntasks = [\"classify\", \"generate\", \"reason\"]\n\
             context_window = {}\nttft_ms = {}\ntokens_per_s = {}\n\
             quality = {{ simple = {q}, medium = {}, hard = {} }}\n\
             price = {{ input = {}, output = {}, as_of = \"bench\", source = \"bench\" }}\n",
            i % 4,
            if i % 2 == 0 { "in_cluster" } else { "external" },
            [8192, 32768, 131072][i % 3],
            50 + (i * 37) % 2000,
            20 + (i * 53) % 900,
            q * 0.8,
            q * 0.6,
            (i % 13) as f64 * 0.1,
            (i % 17) as f64 * 0.4,
        ));
    }
    text.push_str(
        "[[rule]]\nname = \"simple\"\nwhen = { difficulty = [\"simple\"] }\n\
         [[rule]]\nname = \"hard\"\nwhen = { difficulty = [\"hard\"] }\n\
         weights = { quality = 1.0, cost = 0.0, latency = 0.0 }\n\
         [[rule]]\nname = \"rest\"\n",
    );
    text
}

fn inputs() -> Vec<(&'static str, SelectionInput)> {
    let mut simple = SelectionInput::new(Task::Generate, 30_000, false);
    simple.difficulty = Some(Difficulty::Simple);
    simple.input_tokens = 400;
    let mut hard = SelectionInput::new(Task::Reason, 60_000, false);
    hard.difficulty = Some(Difficulty::Hard);
    hard.input_tokens = 2000;
    hard.tenant = Some("acme".to_owned());
    let declared = SelectionInput::new(Task::Generate, 250, false);
    let private = SelectionInput::new(Task::Generate, 30_000, true);
    vec![
        ("simple", simple),
        ("hard+budget", hard),
        ("declared_fast", declared),
        ("private", private),
    ]
}

fn bench(c: &mut Criterion) {
    let tracker = BudgetTracker::new();
    let now = std::time::SystemTime::now();
    tracker.record("acme", 50.0, now);
    let policies = [
        ("builtin", Policy::builtin().expect("valid built-in policy")),
        (
            "synthetic200",
            Policy::parse(&synthetic(200), "synthetic").expect("valid synthetic policy"),
        ),
    ];
    for (name, policy) in &policies {
        let live = LiveStats::new(policy.live_config());
        // Live latency for every model, so the percentile path is measured.
        for m in policy.models() {
            for k in 0..20u64 {
                live.observe(&m.id, Duration::from_millis(100 + k * 10), true);
            }
        }
        let view = BudgetView::new(&tracker, now);
        let mut group = c.benchmark_group(format!("select/{name}"));
        for (label, input) in inputs() {
            group.bench_function(label, |b| {
                b.iter(|| black_box(policy.select(black_box(&input), &live, &view)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
