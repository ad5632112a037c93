//! Helpers shared by the policy tests: random catalogues written as policy
//! files, and an independent statement of the hard constraints.
#![allow(dead_code)]

use proptest::prelude::*;
use routing_core::chat::Locality;
use routing_core::policy::{LiveStats, ModelEntry, SelectionInput};
use routing_core::{Difficulty, Task};

/// Expected output tokens per task, as the generated policies declare them.
pub(crate) const OUTPUT_TOKENS: [(Task, u32); 4] = [
    (Task::Embed, 0),
    (Task::Classify, 16),
    (Task::Generate, 256),
    (Task::Reason, 1024),
];

/// Expected output tokens for `task` in generated policies and the built-in
/// policy alike.
pub(crate) fn default_output_tokens(task: Task) -> u32 {
    OUTPUT_TOKENS
        .iter()
        .find(|(t, _)| *t == task)
        .map_or(0, |(_, n)| *n)
}

/// One generated model.
#[derive(Debug, Clone)]
pub(crate) struct GenModel {
    pub in_cluster: bool,
    pub tasks: Vec<Task>,
    pub context_window: u32,
    pub ttft_ms: u32,
    pub tokens_per_s: u32,
    pub quality: [u32; 3],
    pub price_in: u32,
    pub price_out: u32,
}

pub(crate) fn any_task() -> impl Strategy<Value = Task> {
    prop::sample::select(Task::ALL.to_vec())
}

pub(crate) fn any_difficulty() -> impl Strategy<Value = Option<Difficulty>> {
    prop::option::of(prop::sample::select(vec![
        Difficulty::Simple,
        Difficulty::Medium,
        Difficulty::Hard,
    ]))
}

pub(crate) fn gen_model() -> impl Strategy<Value = GenModel> {
    (
        any::<bool>(),
        prop::sample::subsequence(Task::ALL.to_vec(), 1..=4),
        prop::sample::select(vec![2048u32, 8192, 32768, 131072]),
        0u32..3000,
        1u32..1000,
        [0u32..=100, 0u32..=100, 0u32..=100],
        0u32..2000,
        0u32..4000,
    )
        .prop_map(
            |(
                in_cluster,
                tasks,
                context_window,
                ttft_ms,
                tokens_per_s,
                quality,
                price_in,
                price_out,
            )| {
                GenModel {
                    in_cluster,
                    tasks,
                    context_window,
                    ttft_ms,
                    tokens_per_s,
                    quality,
                    // Prices in cents per 1M tokens, so equal prices happen.
                    price_in: price_in / 100 * 5,
                    price_out: price_out / 100 * 5,
                }
            },
        )
}

/// A policy file with `models` and one catch-all rule ranking by `weights`
/// (`quality, cost, latency`).
pub(crate) fn policy_text(models: &[GenModel], weights: (f64, f64, f64), extra: &str) -> String {
    let mut text = format!(
        "version = 1\n\
         [selection]\n\
         max_fallbacks = 3\n\
         on_latency_miss = \"best_effort\"\n\
         unknown_difficulty = \"medium\"\n\
         [selection.output_tokens]\n\
         embed = 0\nclassify = 16\ngenerate = 256\nreason = 1024\n\
         {extra}\n"
    );
    for (i, m) in models.iter().enumerate() {
        let tasks: Vec<String> = m.tasks.iter().map(|t| format!("\"{t}\"")).collect();
        text.push_str(&format!(
            "[[model]]\n\
             id = \"m{i}\"\n\
             provider = \"gen{i}\"\n\
             model = \"model-{i}\"\n\
             locality = \"{}\"\n\
             tasks = [{}]\n\
             context_window = {}\n\
             ttft_ms = {}\n\
             tokens_per_s = {}\n\
             quality = {{ simple = {}, medium = {}, hard = {} }}\n\
             price = {{ input = {}, output = {}, as_of = \"test\", source = \"generated\" }}\n",
            if m.in_cluster {
                "in_cluster"
            } else {
                "external"
            },
            tasks.join(", "),
            m.context_window,
            m.ttft_ms,
            m.tokens_per_s,
            f64::from(m.quality[0]) / 100.0,
            f64::from(m.quality[1]) / 100.0,
            f64::from(m.quality[2]) / 100.0,
            f64::from(m.price_in) / 100.0,
            f64::from(m.price_out) / 100.0,
        ));
    }
    text.push_str(&format!(
        "[[rule]]\nname = \"all\"\nweights = {{ quality = {}, cost = {}, latency = {} }}\n",
        weights.0, weights.1, weights.2
    ));
    text
}

/// Output tokens a selection assumes for `input`.
pub(crate) fn output_tokens(input: &SelectionInput) -> u32 {
    input
        .max_output_tokens
        .unwrap_or_else(|| default_output_tokens(input.task))
}

/// Expected quality: the catalogue's score for the tier (medium when
/// unknown); with a classifier confidence `c`, `c·q(tier) + (1−c)·q(next
/// tiers)`, the next tiers being medium for simple and hard, and the mean of
/// simple and hard for medium.
pub(crate) fn expected_quality(m: &ModelEntry, input: &SelectionInput) -> f32 {
    let tiers = m.quality.tiers(input.task);
    let tier = input.difficulty.unwrap_or(Difficulty::Medium);
    let q = tiers.get(tier);
    match (input.difficulty, input.confidence) {
        (Some(_), Some(c)) => {
            let next = match tier {
                Difficulty::Simple | Difficulty::Hard => tiers.medium,
                Difficulty::Medium => (tiers.simple + tiers.hard) / 2.0,
            };
            c * q + (1.0 - c) * next
        }
        _ => q,
    }
}

/// The latency the budget check uses: live percentile when trusted, else
/// the prior.
pub(crate) fn budget_latency(m: &ModelEntry, input: &SelectionInput, live: &LiveStats) -> f64 {
    live.trusted_latency(&m.id).map_or_else(
        || m.expected_latency_ms(output_tokens(input)),
        |l| l.percentile_ms,
    )
}

/// Every hard constraint except latency, stated independently of the
/// library's own evaluation. `Err` names the one violated.
pub(crate) fn hard_constraints(
    m: &ModelEntry,
    input: &SelectionInput,
    floor: f32,
) -> Result<(), &'static str> {
    if input.private && m.locality != Locality::InCluster {
        return Err("private");
    }
    if !m.tasks.contains(&input.task) {
        return Err("task");
    }
    let out = output_tokens(input);
    if input.task != Task::Embed
        && u64::from(input.input_tokens) + u64::from(out) > u64::from(m.context_window)
    {
        return Err("context window");
    }
    let cost =
        (f64::from(input.input_tokens) * m.price.input + f64::from(out) * m.price.output) / 1e6;
    if input.max_cost_usd.is_some_and(|cap| cost > cap) {
        return Err("cost cap");
    }
    if expected_quality(m, input) < floor {
        return Err("quality floor");
    }
    Ok(())
}

/// Expected cost in USD, computed independently.
pub(crate) fn cost(m: &ModelEntry, input: &SelectionInput) -> f64 {
    (f64::from(input.input_tokens) * m.price.input
        + f64::from(output_tokens(input)) * m.price.output)
        / 1e6
}
