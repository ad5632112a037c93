//! `Policy::select` over the built-in catalogue and a synthetic 200-model
//! one; the same with learned quality and the exploration draw; the
//! calibrated tier decision beside it.
#![expect(
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly at the first surprise; criterion_main! defines an undocumented main"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use routing_core::policy::{
    ArmKey, BudgetStore, BudgetTracker, BudgetView, Calibrator, Learner, LearningContext,
    LiveStats, Policy, SelectionInput,
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

/// Selection with learned quality for every model (each past
/// `min_observations`), then the exploration draw, as llm-router runs it.
fn learned(c: &mut Criterion) {
    let tracker = BudgetTracker::new();
    let now = std::time::SystemTime::now();
    let policy = Policy::builtin().expect("valid built-in policy");
    let live = LiveStats::new(policy.live_config());
    let view = BudgetView::new(&tracker, now);
    let learner = Learner::in_memory(1);
    let mut group = c.benchmark_group("select_learned/builtin");
    for (label, input) in inputs() {
        let context = LearningContext::for_input(&input);
        for (i, m) in policy.models().enumerate() {
            let key = ArmKey {
                model: m.id.clone(),
                context,
            };
            for k in 0..40 {
                let reward = if (i + k) % 3 == 0 { 0.0 } else { 1.0 };
                ready(learner.learn(policy.learning(), None, &key, reward)).expect("learned");
            }
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let learned = ready(learner.view(&policy, &context)).expect("view");
                let decision = policy.select_learned(black_box(&input), &live, &view, &learned);
                if let Ok(mut d) = decision {
                    learner.explore(policy.learning(), &input, &mut d, &learned, "call-id");
                    black_box(d);
                }
            })
        });
    }
    group.finish();
}

/// Drives a future that never waits (the in-memory window store's).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-memory store never waits"),
    }
}

/// The per-request calibration path (scope, tier, buffering) with a full
/// window, and one merge + re-sort of the window (every `recompute_every`
/// requests).
fn calibration(c: &mut Criterion) {
    let policy = Policy::builtin().expect("valid built-in policy");
    let config = policy.calibration().clone();
    let mut input = SelectionInput::new(Task::Generate, 30_000, false);
    input.tenant = Some("acme".to_owned());
    let scope = policy.calibration_scope(&input);
    let calibrator = Calibrator::default();
    let prompt = "Explain the difference between a process and a thread.".repeat(8);
    let mut k = 0u32;
    // Fill the window.
    for i in 0..config.window * 2 {
        let score = ((i * 7919) % 1000) as f32 / 1000.0;
        if let Some(key) = calibrator
            .calibrate(&config, &scope, score, &prompt)
            .refresh
        {
            let _ = ready(calibrator.refresh(&key, &config));
        }
    }
    let mut group = c.benchmark_group("calibration");
    // What the router does per judged request: scope, tier, buffer, and the
    // merge + re-sort when the buffer is due (amortised).
    group.bench_function("decide", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            let scope = policy.calibration_scope(black_box(&input));
            let score = (k % 1000) as f32 / 1000.0;
            let c = calibrator.calibrate(&config, &scope, score, black_box(&prompt));
            if let Some(key) = &c.refresh {
                let _ = ready(calibrator.refresh(key, &config));
            }
            black_box(c.difficulty)
        })
    });
    group.bench_function("refresh_window_2000", |b| {
        b.iter(|| {
            k = k.wrapping_add(7919);
            let score = (k % 1000) as f32 / 1000.0;
            let _ = calibrator.calibrate(&config, &scope, score, &prompt);
            black_box(ready(calibrator.refresh(&scope.key, &config)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench, learned, calibration);
criterion_main!(benches);
