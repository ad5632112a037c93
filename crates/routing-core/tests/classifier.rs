//! The trained classifier: the model file, parity with the training script,
//! held-out quality against baselines computed from the data, and behaviour
//! on any input.
//!
//! The held-out checks read `../shared/data/` beside the repository (as CI
//! has it) and fail, naming the path, when it is missing.
#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;
use routing_core::Task;
use routing_core::classifier::{self, DEFAULT_MODEL_JSON, Model, features, signal};
use serde_json::Value;

fn model() -> &'static Model {
    classifier::default_model().expect("the compiled-in model loads")
}

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(
        dir.join("README.md").exists(),
        "shared data not found at {} (see the project README)",
        dir.display()
    );
    dir
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The training script's split: the first 8 bytes of SHA-256 of `key`, as a
/// fraction of 2^64.
fn bucket(key: &str) -> f64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b) as f64 / 2f64.powi(64)
}

struct Question {
    prompt: String,
    weak: bool,
    strong: bool,
}

/// RouteLLM MMLU questions of the held-out test split.
fn mmlu_test() -> Vec<Question> {
    let dir = data_dir().join("routellm-mmlu/mmlu/responses");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        for row in parse_csv(&std::fs::read_to_string(&path).unwrap())
            .into_iter()
            .skip(1)
        {
            let [prompt, weak, strong] = <[String; 3]>::try_from(row).unwrap();
            if bucket(&format!("mmlu:{prompt}")) >= 0.85 {
                out.push(Question {
                    prompt,
                    weak: weak == "True",
                    strong: strong == "True",
                });
            }
        }
    }
    assert!(out.len() > 1000, "{} held-out questions", out.len());
    out
}

/// BANKING77's own test queries.
fn banking_test() -> Vec<(String, String)> {
    parse_csv(&std::fs::read_to_string(data_dir().join("banking77/test.csv")).unwrap())
        .into_iter()
        .skip(1)
        .filter_map(|r| <[String; 2]>::try_from(r).ok())
        .map(|[t, c]| (t, c))
        .collect()
}

fn top(model: &Model, text: &str) -> Task {
    model.predict(text).top_task().0
}

fn majority(labels: &[Task]) -> f64 {
    let mut counts: HashMap<Task, usize> = HashMap::new();
    labels
        .iter()
        .for_each(|t| *counts.entry(*t).or_default() += 1);
    *counts.values().max().unwrap() as f64 / labels.len() as f64
}

/// Area under the ROC curve by the rank-sum formula (ties share ranks).
fn auc(scores: &[f32], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| ranks[k] = rank);
        i = j + 1;
    }
    let n1 = positive.iter().filter(|p| **p).count() as f64;
    let n0 = positive.len() as f64 - n1;
    let sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (sum - n1 * (n1 + 1.0) / 2.0) / (n1 * n0)
}

#[test]
fn the_compiled_in_model_loads_with_matching_dimensions() {
    let m = model();
    assert_eq!(m.tasks(), [Task::Classify, Task::Generate, Task::Reason]);
    let file: Value = serde_json::from_str(DEFAULT_MODEL_JSON).unwrap();
    assert_eq!(file["id"].as_str(), Some(m.id()));
    assert_eq!(file["dim"].as_u64(), Some(features::DIM as u64));
    assert_eq!(
        file["feature_fingerprint"].as_str(),
        Some(features::fingerprint().as_str())
    );
    let t = m.thresholds();
    assert!(0.0 < t.medium_from && t.medium_from < t.hard_from && t.hard_from < 1.0);
    let answer = classifier::classify("Write a haiku about autumn");
    assert_eq!(
        answer.method.as_deref(),
        Some(format!("model:{}", m.id()).as_str())
    );
}

#[test]
fn broken_or_stale_model_files_are_refused() {
    let good: Value = serde_json::from_str(DEFAULT_MODEL_JSON).unwrap();
    let with = |field: &str, value: Value| {
        let mut v = good.clone();
        v[field] = value;
        Model::from_json(&v.to_string())
    };
    let with_gain = |field: &str, value: Value| {
        let mut v = good.clone();
        v["gain"][field] = value;
        Model::from_json(&v.to_string())
    };
    assert!(Model::from_json(&good.to_string()).is_ok());
    let weights = good["task_weights"].as_str().unwrap();
    let cases = [
        (
            "feature_fingerprint",
            Value::from("fnv1a64:0000000000000000"),
        ),
        (
            "feature_version",
            Value::from(features::FEATURE_VERSION + 1),
        ),
        ("dim", Value::from(features::DIM + 1)),
        ("format", Value::from("something-else")),
        ("format_version", Value::from(99)),
        ("format_version", Value::from(1)),
        ("task_weights", Value::from(&weights[..weights.len() - 8])),
        ("task_weights", Value::from("not base64!")),
        ("task_bias", serde_json::json!([0.0, 0.0])),
        ("task_temperature", Value::from(0.0)),
        ("gain", Value::Null),
        ("tasks", serde_json::json!(["reason", "reason", "generate"])),
        ("tasks", serde_json::json!(["reason"])),
        (
            "difficulty_thresholds",
            serde_json::json!({"medium_from": 0.5, "hard_from": 0.2}),
        ),
    ];
    for (field, value) in cases {
        let shown = value.to_string();
        assert!(
            with(field, value).is_err(),
            "{field} = {} was accepted",
            &shown[..shown.len().min(60)]
        );
    }
    // A NaN weight (0x7fc00000 little-endian) in the first slot.
    let mut bytes = base64_decode(weights);
    bytes[..4].copy_from_slice(&[0x00, 0x00, 0xc0, 0x7f]);
    assert!(with("task_weights", Value::from(base64_encode(&bytes))).is_err());
    // The gain head: made for this build's signal, one finite value per
    // signal value, positive scales.
    let n = signal::SIGNAL_DIM;
    let mut renamed = good["gain"]["features"].clone();
    renamed[0] = Value::from("log_chars");
    let gain_cases = [
        ("signal_version", Value::from(signal::SIGNAL_VERSION + 1)),
        ("features", renamed),
        ("mean", serde_json::json!(vec![0.0; n - 1])),
        ("weights", serde_json::json!(vec![0.0; n + 1])),
        ("scale", serde_json::json!(vec![0.0; n])),
        ("scale", serde_json::json!(vec![-1.0; n])),
        ("bias", Value::from("x")),
        (
            "quality",
            serde_json::json!({"weak": {"weights": [0.0], "bias": 0.0},
                               "strong": {"weights": vec![0.0; n], "bias": 0.0}}),
        ),
    ];
    for (field, value) in gain_cases {
        let shown = value.to_string();
        assert!(
            with_gain(field, value).is_err(),
            "gain.{field} = {} was accepted",
            &shown[..shown.len().min(60)]
        );
    }
    assert!(Model::from_json("{").is_err());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn rust_gives_the_probabilities_the_training_script_computed() {
    let lines = fixture("classifier-parity.jsonl");
    let mut n = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap();
        let text = row["text"].as_str().unwrap();
        let p = model().predict(text);
        for (task, prob) in &p.task_probs {
            let expected = row["tasks"][task.as_str()].as_f64().unwrap();
            assert!(
                (f64::from(*prob) - expected).abs() < 1e-4,
                "{text:?}: {task} {prob} vs {expected}"
            );
        }
        // needs_strong is served unrounded for quantile thresholds: it must
        // match to f32 precision, not just to the old wire precision.
        let expected = row["needs_strong"].as_f64().unwrap();
        assert!(
            (f64::from(p.needs_strong) - expected).abs() < 1e-5,
            "{text:?}: needs_strong {} vs {expected}",
            p.needs_strong
        );
        let quality = p.quality.expect("the model predicts per-tier quality");
        for (tier, got) in [
            ("quality_weak", quality.weak),
            ("quality_strong", quality.strong),
        ] {
            let expected = row[tier].as_f64().unwrap();
            assert!(
                (f64::from(got) - expected).abs() < 1e-5,
                "{text:?}: {tier} {got} vs {expected}"
            );
        }
        n += 1;
    }
    assert!(n >= 40, "only {n} parity rows");
}

#[test]
fn held_out_tasks_beat_the_majority_class_by_half_the_headroom() {
    // Reason: MMLU questions as given. Generate: BANKING77 test queries as
    // they are. Classify: other BANKING77 test queries inside an instruction
    // written for this test only (no training template reads like it).
    let questions = mmlu_test();
    let queries = banking_test();
    let mut labels: Vec<(String, Task)> = Vec::new();
    labels.extend(
        questions
            .iter()
            .take(600)
            .map(|q| (q.prompt.clone(), Task::Reason)),
    );
    labels.extend(
        queries
            .iter()
            .step_by(2)
            .take(600)
            .map(|(t, _)| (t.clone(), Task::Generate)),
    );
    let intents: Vec<&str> = queries.iter().map(|(_, c)| c.as_str()).collect();
    labels.extend(queries.iter().skip(1).step_by(2).take(600).enumerate().map(|(i, (t, c))| {
        let other = intents[(i * 7 + 3) % intents.len()].replace('_', " ");
        (
            format!(
                "Customer message: {t}\nWhich category applies: {} or {other}? Respond with the category name.",
                c.replace('_', " ")
            ),
            Task::Classify,
        )
    }));
    let truth: Vec<Task> = labels.iter().map(|(_, t)| *t).collect();
    let m = model();
    let correct = labels.iter().filter(|(text, t)| top(m, text) == *t).count();
    let accuracy = correct as f64 / labels.len() as f64;
    let base = majority(&truth);
    let bar = base + (1.0 - base) / 2.0;
    assert!(
        accuracy >= bar,
        "accuracy {accuracy:.3} below {bar:.3} (majority class {base:.3})"
    );
}

#[test]
fn needs_strong_ranks_held_out_mmlu_better_than_chance_and_is_calibrated() {
    let questions = mmlu_test();
    let m = model();
    let p: Vec<f32> = questions
        .iter()
        .map(|q| m.predict(&q.prompt).needs_strong)
        .collect();
    let y: Vec<bool> = questions.iter().map(|q| !q.weak && q.strong).collect();
    let n1 = y.iter().filter(|v| **v).count() as f64;
    let n0 = y.len() as f64 - n1;
    // Standard error of the AUC of a random ranking (Mann-Whitney under the
    // null); the model must clear chance by three of them.
    let se = ((n1 + n0 + 1.0) / (12.0 * n1 * n0)).sqrt();
    let a = auc(&p, &y);
    assert!(
        a > 0.5 + 3.0 * se,
        "AUC {a:.3} within 3 SE ({se:.3}) of chance"
    );
    // The mean probability matches the observed rate within 3 binomial SE.
    let rate = n1 / y.len() as f64;
    let mean = p.iter().map(|v| f64::from(*v)).sum::<f64>() / p.len() as f64;
    let se_rate = (rate * (1.0 - rate) / y.len() as f64).sqrt();
    assert!(
        (mean - rate).abs() < 3.0 * se_rate,
        "mean needs_strong {mean:.3} vs observed {rate:.3}"
    );
    // Routing the 30% the model ranks highest to the strong model beats
    // routing a random 30%.
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let k = (0.3 * p.len() as f64).round() as usize;
    let routed = |i: usize, strong: bool| {
        let q = &questions[i];
        if strong { q.strong } else { q.weak }
    };
    let mut chosen = vec![false; p.len()];
    order[..k].iter().for_each(|&i| chosen[i] = true);
    let acc = (0..p.len()).filter(|&i| routed(i, chosen[i])).count() as f64 / p.len() as f64;
    let weak = questions.iter().filter(|q| q.weak).count() as f64 / p.len() as f64;
    let strong = questions.iter().filter(|q| q.strong).count() as f64 / p.len() as f64;
    let random = weak + 0.3 * (strong - weak);
    assert!(
        acc > random,
        "top-30% routing {acc:.3} vs random {random:.3}"
    );
}

/// MATH competition problems (the first `n` of the test set).
fn math_problems(n: usize) -> Vec<String> {
    std::fs::read_to_string(data_dir().join("math-test-levels/math_test_levels.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            row["problem"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn needs_strong_orders_kinds_of_prompt_by_their_expected_gain() {
    // Intents gain nothing from the strong tier, MMLU questions about 0.18,
    // MATH problems about 0.45 (scripts/eval-routing's labels): the mean
    // score keeps that order. The leave-one-source-out figures are in
    // models/classifier-report.md; this guards the shipped model.
    let m = model();
    let mean = |texts: &[String]| {
        texts
            .iter()
            .map(|t| f64::from(m.predict(t).needs_strong))
            .sum::<f64>()
            / texts.len() as f64
    };
    let intents: Vec<String> = banking_test()
        .into_iter()
        .take(500)
        .map(|(t, _)| t)
        .collect();
    let exams: Vec<String> = mmlu_test()
        .into_iter()
        .take(500)
        .map(|q| q.prompt)
        .collect();
    let maths = math_problems(500);
    let (i, e, x) = (mean(&intents), mean(&exams), mean(&maths));
    assert!(
        i < e && e < x,
        "mean needs_strong: intents {i:.3}, MMLU {e:.3}, MATH {x:.3}"
    );
}

#[test]
fn hand_written_prompts_are_mostly_right_and_ambiguous_ones_less_sure() {
    let mut clear = Vec::new();
    let mut ambiguous = Vec::new();
    for line in fixture("classifier-prompts.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let row: Value = serde_json::from_str(line).unwrap();
        let text = row["text"].as_str().unwrap().to_owned();
        let task: Task = row["task"].as_str().unwrap().parse().unwrap();
        if row["ambiguous"].as_bool() == Some(true) {
            ambiguous.push(text);
        } else {
            clear.push((text, task));
        }
    }
    let m = model();
    let truth: Vec<Task> = clear.iter().map(|(_, t)| *t).collect();
    let accuracy =
        clear.iter().filter(|(t, task)| top(m, t) == *task).count() as f64 / clear.len() as f64;
    let base = majority(&truth);
    assert!(
        accuracy >= base + (1.0 - base) / 2.0,
        "accuracy {accuracy:.3}, majority {base:.3}"
    );
    let mean = |texts: &mut dyn Iterator<Item = &String>| {
        let v: Vec<f32> = texts.map(|t| m.predict(t).confidence()).collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let c = mean(&mut clear.iter().map(|(t, _)| t));
    let a = mean(&mut ambiguous.iter());
    assert!(a < c, "ambiguous {a:.3} vs clear {c:.3}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_gets_a_distribution_and_a_confidence_in_range(text in "\\PC{0,600}") {
        let p = model().predict(&text);
        let sum: f32 = p.task_probs.iter().map(|(_, v)| v).sum();
        prop_assert!((sum - 1.0).abs() < 1e-5, "{p:?}");
        prop_assert!(p.task_probs.iter().all(|(_, v)| (0.0..=1.0).contains(v)));
        prop_assert!((0.0..=1.0).contains(&p.needs_strong));
        let r = classifier::classify(&text);
        prop_assert!((0.0..=1.0).contains(&r.confidence));
        prop_assert!(r.task != Task::Embed);
        prop_assert!(r.task_confidence.is_some_and(|c| (0.0..=1.0).contains(&c)));
        prop_assert!(r.confidence <= r.task_confidence.unwrap_or(1.0) + 1e-3);
    }

    #[test]
    fn structured_and_huge_texts_never_panic(
        unit in "[a-zA-Z0-9 ?.,:;=+*/^(){}\\n\"'é東😀∑√-]{1,12}",
        reps in 1usize..4000,
    ) {
        let text = unit.repeat(reps);
        let r = classifier::classify(&text);
        prop_assert!(r.confidence.is_finite());
    }
}
