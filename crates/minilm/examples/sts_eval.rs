//! STS Benchmark evaluation: Spearman (and Pearson) correlation between the cosine of each
//! sentence pair's embeddings and its human similarity score, as sentence-transformers reports
//! it (all-MiniLM-L6-v2's published figure on the test split is 82.0).
//!
//! ```text
//! cargo run --release -p minilm --example sts_eval -- MODEL_DIR FILE.tsv [FILE.tsv ...]
//! ```
//!
//! Each file is in the original STS Benchmark layout: tab-separated genre, file, year, id,
//! score (0-5), sentence 1, sentence 2, then optional attribution columns.
#![expect(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "an example reports on the terminal"
)]

use std::process::ExitCode;
use std::time::Instant;

use minilm::MiniLm;

/// Texts embedded per call.
const CHUNK: usize = 256;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, files @ ..] = args.as_slice() else {
        eprintln!("usage: sts_eval MODEL_DIR FILE.tsv [FILE.tsv ...]");
        return ExitCode::from(2);
    };
    if files.is_empty() {
        eprintln!("usage: sts_eval MODEL_DIR FILE.tsv [FILE.tsv ...]");
        return ExitCode::from(2);
    }
    let model = match MiniLm::load(model_dir) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for file in files {
        if let Err(e) = evaluate(&model, file) {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn evaluate(model: &MiniLm, file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let mut scores = Vec::new();
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 7 {
            return Err(format!(
                "line {}: {} fields, expected 7",
                n + 1,
                fields.len()
            ));
        }
        let score: f64 = fields[4]
            .trim()
            .parse()
            .map_err(|e| format!("line {}: score {:?}: {e}", n + 1, fields[4]))?;
        scores.push(score);
        firsts.push(fields[5].trim());
        seconds.push(fields[6].trim());
    }
    let started = Instant::now();
    let a = embed_all(model, &firsts)?;
    let b = embed_all(model, &seconds)?;
    let seconds_taken = started.elapsed().as_secs_f64();
    let cosines: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum()
        })
        .collect();
    println!(
        "{file}: {} pairs, Spearman {:.2}, Pearson {:.2} (x100), {} sentences embedded in {:.1} s ({:.0}/s)",
        scores.len(),
        100.0 * spearman(&cosines, &scores),
        100.0 * pearson(&cosines, &scores),
        2 * scores.len(),
        seconds_taken,
        (2 * scores.len()) as f64 / seconds_taken
    );
    Ok(())
}

fn embed_all(model: &MiniLm, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(CHUNK) {
        out.extend(model.embed(chunk).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let mean = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = mean;
        }
        start = end;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}
