//! Replays RouteLLM's MMLU responses through the routing policy and prints
//! the cost–quality curve: the share of requests sent to the strong model
//! against the accuracy recovered, with always-weak, always-strong and random
//! baselines at the same share.
//!
//! Each CSV row is a prompt and whether the weak model (Mixtral-8x7B) and the
//! strong model (GPT-4-1106) answered it correctly. Every prompt is
//! classified with `routing_core::classifier::classify` (difficulty and
//! confidence), then routed by a two-model policy whose cost weight is swept:
//! `score = q − λ·cost/cost_unit`, with per-tier quality priors written in the
//! policy below (not fitted to this data). A small λ sends everything to the
//! strong model, a large one everything to the weak one; in between, prompts
//! whose expected quality gap (from difficulty and confidence) is largest go
//! strong first.
//!
//! The classifier's difficulty head is trained on 70% of these prompts; the
//! default `--split test` evaluates only the 15% it held out (the same
//! SHA-256 bucket as `scripts/train-classifier.py`).
//!
//! ```text
//! cargo run --release -p routing-core --example eval_routing -- \
//!     --data ../shared/data/routellm-mmlu/mmlu/responses [--split test|val|train|all]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use routing_core::classifier;
use routing_core::policy::{BudgetView, LiveStats, Policy, SelectionInput, estimate_tokens};
use routing_core::{Difficulty, Task};

const WEAK: &str = "eval/mixtral-8x7b-instruct";
const STRONG: &str = "eval/gpt-4-1106-preview";

/// The evaluation policy: the two models of the data set, priced as they
/// were when RouteLLM collected it (Mixtral on Together: $0.60/$0.60 per 1M;
/// GPT-4 Turbo: $10/$30 per 1M), and one scored rule with cost weight `λ`.
fn policy(lambda: f64) -> Result<Policy, String> {
    let text = format!(
        r#"version = 1
[selection]
on_latency_miss = "best_effort"
cost_unit_usd = 0.001
[weights]
default = {{ quality = 1.0, cost = {lambda}, latency = 0.0 }}
simple = {{ quality = 1.0, cost = {lambda}, latency = 0.0 }}
medium = {{ quality = 1.0, cost = {lambda}, latency = 0.0 }}
hard = {{ quality = 1.0, cost = {lambda}, latency = 0.0 }}

[[model]]
id = "{WEAK}"
provider = "together"
model = "mistralai/Mixtral-8x7B-Instruct-v0.1"
locality = "external"
tasks = ["classify", "generate", "reason"]
context_window = 32768
ttft_ms = 300
tokens_per_s = 100
quality = {{ simple = 0.75, medium = 0.6, hard = 0.45 }}
price = {{ input = 0.6, output = 0.6, as_of = "2024-01", source = "together.ai pricing (RouteLLM paper)" }}

[[model]]
id = "{STRONG}"
provider = "openai"
model = "gpt-4-1106-preview"
locality = "external"
tasks = ["classify", "generate", "reason"]
context_window = 128000
ttft_ms = 600
tokens_per_s = 40
quality = {{ simple = 0.9, medium = 0.85, hard = 0.8 }}
price = {{ input = 10.0, output = 30.0, as_of = "2024-01", source = "openai.com/pricing (RouteLLM paper)" }}

[[rule]]
name = "cost_quality"
"#
    );
    Policy::parse(&text, "eval").map_err(|e| e.to_string())
}

struct Row {
    prompt: String,
    weak: bool,
    strong: bool,
}

/// RFC 4180 fields: quoted fields may hold commas, newlines and `""`.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn load(dir: &Path) -> Result<Vec<Row>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no CSV files in {}", dir.display()));
    }
    let mut rows = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut records = parse_csv(&text).into_iter();
        let header = records.next().unwrap_or_default();
        if header.len() != 3 || header[0] != "prompt" {
            return Err(format!("{}: unexpected header {header:?}", path.display()));
        }
        for (i, r) in records.enumerate() {
            let [prompt, weak, strong] = <[String; 3]>::try_from(r)
                .map_err(|r| format!("{} row {}: {} fields", path.display(), i + 2, r.len()))?;
            let flag = |v: &str| match v {
                "True" => Ok(true),
                "False" => Ok(false),
                other => Err(format!(
                    "{} row {}: {other:?} is not True/False",
                    path.display(),
                    i + 2
                )),
            };
            rows.push(Row {
                weak: flag(&weak)?,
                strong: flag(&strong)?,
                prompt,
            });
        }
    }
    Ok(rows)
}

/// `scripts/train-classifier.py`'s split of MMLU prompts.
fn split_of(prompt: &str) -> &'static str {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("mmlu:{prompt}").as_bytes(),
    );
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest.as_ref()[..8]);
    let u = u64::from_be_bytes(head) as f64 / 2f64.powi(64);
    if u < 0.70 {
        "train"
    } else if u < 0.85 {
        "val"
    } else {
        "test"
    }
}

struct Point {
    lambda: f64,
    share: f64,
    accuracy: f64,
    cost_per_1k: f64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eval_routing: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut data = PathBuf::from("../shared/data/routellm-mmlu/mmlu/responses");
    let mut split = "test".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next().ok_or("--data needs a folder")?.into(),
            "--split" => split = args.next().ok_or("--split needs test|val|train|all")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !["test", "val", "train", "all"].contains(&split.as_str()) {
        return Err(format!(
            "--split {split:?}: expected test, val, train or all"
        ));
    }
    let all = load(&data)?;
    let total = all.len();
    let rows: Vec<Row> = all
        .into_iter()
        .filter(|r| split == "all" || split_of(&r.prompt) == split)
        .collect();
    if rows.is_empty() {
        return Err("no rows in the split".to_owned());
    }
    let n = rows.len() as f64;

    // Classify once.
    let classified: Vec<(Task, Difficulty, f32, u32)> = rows
        .iter()
        .map(|r| {
            let c = classifier::classify(&r.prompt);
            let task = if c.task == Task::Embed {
                Task::Reason
            } else {
                c.task
            };
            (task, c.difficulty, c.confidence, estimate_tokens(&r.prompt))
        })
        .collect();

    let acc_weak = rows.iter().filter(|r| r.weak).count() as f64 / n;
    let acc_strong = rows.iter().filter(|r| r.strong).count() as f64 / n;
    let oracle = rows.iter().filter(|r| r.weak || r.strong).count() as f64 / n;
    let oracle_share = rows.iter().filter(|r| !r.weak && r.strong).count() as f64 / n;
    let gap = acc_strong - acc_weak;

    println!(
        "RouteLLM MMLU responses: {} ({} of {total} prompts, split {split})",
        data.display(),
        rows.len()
    );
    println!("weak  = Mixtral-8x7B-Instruct   accuracy {:.4}", acc_weak);
    println!("strong = GPT-4-1106-preview     accuracy {:.4}", acc_strong);
    println!(
        "oracle (strong only where it alone is right): accuracy {:.4} at {:.1}% strong",
        oracle,
        100.0 * oracle_share
    );
    println!();
    println!("classifier difficulty vs the weak model's failures:");
    println!("  tier      prompts  weak acc  strong acc  weak wrong & strong right");
    for tier in [Difficulty::Simple, Difficulty::Medium, Difficulty::Hard] {
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| classified[i].1 == tier)
            .collect();
        if idx.is_empty() {
            println!("  {:<8}  {:>7}", tier.as_str(), 0);
            continue;
        }
        let m = idx.len() as f64;
        let w = idx.iter().filter(|&&i| rows[i].weak).count() as f64 / m;
        let s = idx.iter().filter(|&&i| rows[i].strong).count() as f64 / m;
        let g = idx
            .iter()
            .filter(|&&i| !rows[i].weak && rows[i].strong)
            .count() as f64
            / m;
        println!(
            "  {:<8}  {:>7}  {:>8.4}  {:>10.4}  {:>8.4}",
            tier.as_str(),
            idx.len(),
            w,
            s,
            g
        );
    }
    println!();

    let mean_tokens = (classified.iter().map(|c| f64::from(c.3)).sum::<f64>() / n).round() as u32;
    let recovered = |acc: f64| {
        if gap.abs() < 1e-12 {
            0.0
        } else {
            (acc - acc_weak) / gap
        }
    };
    for (title, fixed) in [
        (
            "policy as deployed: each prompt priced by its estimated tokens".to_owned(),
            None,
        ),
        (
            format!(
                "difficulty signal alone: every prompt priced as the mean prompt ({mean_tokens} tokens)"
            ),
            Some(mean_tokens),
        ),
    ] {
        let points = sweep(&rows, &classified, fixed)?;
        print_curve(&title, &points, acc_weak, acc_strong, gap, &recovered);
    }
    Ok(())
}

/// Routes every row with the cost weight swept over a log grid (and 0:
/// always the better model); one point per distinct strong share.
fn sweep(
    rows: &[Row],
    classified: &[(Task, Difficulty, f32, u32)],
    fixed_tokens: Option<u32>,
) -> Result<Vec<Point>, String> {
    let n = rows.len() as f64;
    let mut lambdas = vec![0.0];
    lambdas.extend((-64..=64).map(|k| 10f64.powf(f64::from(k) / 32.0)));
    let live = LiveStats::default();
    let mut points: Vec<Point> = Vec::new();
    for &lambda in &lambdas {
        let policy = policy(lambda)?;
        let mut strong_calls = 0usize;
        let mut correct = 0usize;
        let mut cost = 0.0;
        for (r, &(task, difficulty, confidence, tokens)) in rows.iter().zip(classified) {
            let mut input = SelectionInput::new(task, 600_000, false);
            input.difficulty = Some(difficulty);
            input.confidence = Some(confidence);
            input.input_tokens = fixed_tokens.unwrap_or(tokens);
            input.max_output_tokens = Some(2);
            let d = policy
                .select(&input, &live, &BudgetView::unlimited())
                .map_err(|e| e.message)?;
            let strong = d.primary.model.id == STRONG;
            strong_calls += usize::from(strong);
            correct += usize::from(if strong { r.strong } else { r.weak });
            cost += d.primary.expected_cost_usd;
        }
        let point = Point {
            lambda,
            share: strong_calls as f64 / n,
            accuracy: correct as f64 / n,
            cost_per_1k: cost / n * 1000.0,
        };
        if !points.iter().any(|p| (p.share - point.share).abs() < 1e-12) {
            points.push(point);
        }
    }
    points.sort_by(|a, b| a.share.total_cmp(&b.share));
    Ok(points)
}

fn print_curve(
    title: &str,
    points: &[Point],
    acc_weak: f64,
    acc_strong: f64,
    gap: f64,
    recovered: &dyn Fn(f64) -> f64,
) {
    println!("cost–quality curve, {title}");
    println!(
        "(score = quality − λ·cost/$0.001; quality from classified difficulty and confidence)"
    );
    println!(
        "  {:>9}  {:>8}  {:>8}  {:>9}  {:>10}  {:>11}  {:>9}",
        "λ", "strong%", "accuracy", "recovered", "random acc", "random rec.", "$/1k req"
    );
    println!(
        "  {:>9}  {:>7.1}%  {:>8.4}  {:>8.1}%  {:>10.4}  {:>10.1}%  {:>9}",
        "weak", 0.0, acc_weak, 0.0, acc_weak, 0.0, "-"
    );
    for p in points {
        println!(
            "  {:>9.4}  {:>7.1}%  {:>8.4}  {:>8.1}%  {:>10.4}  {:>10.1}%  {:>9.4}",
            p.lambda,
            100.0 * p.share,
            p.accuracy,
            100.0 * recovered(p.accuracy),
            acc_weak + p.share * gap,
            100.0 * p.share,
            p.cost_per_1k
        );
    }
    println!(
        "  {:>9}  {:>7.1}%  {:>8.4}  {:>8.1}%  {:>10.4}  {:>10.1}%  {:>9}",
        "strong", 100.0, acc_strong, 100.0, acc_strong, 100.0, "-"
    );
    // Area under recovered-vs-share (APGR in the RouteLLM paper): random
    // routing scores 0.5.
    let mut curve: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    curve.extend(points.iter().map(|p| (p.share, recovered(p.accuracy))));
    curve.push((1.0, 1.0));
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    let apgr: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    println!("  APGR (area under recovered vs strong share): {apgr:.3} (random 0.500)");
    for target in [0.5, 0.8] {
        let needed = curve
            .iter()
            .find(|(_, rec)| *rec >= target)
            .map_or(1.0, |(share, _)| *share);
        println!(
            "  strong calls to recover {:.0}% of the gap: {:.1}% (random {:.1}%)",
            100.0 * target,
            100.0 * needed,
            100.0 * target
        );
    }
    println!();
}
