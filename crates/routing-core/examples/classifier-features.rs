//! Exports the classifier's features, so the training script uses the very
//! extractor that serves.
//!
//! - `classifier-features info`: one JSON object with the feature version,
//!   dimensions, dense names and fingerprint.
//! - `classifier-features extract`: reads JSON lines, each a string or an
//!   object with a `text` field, and writes one line per input,
//!   `{"i":[indices],"v":[values]}`.
//! - `classifier-features extract-bin`: the same, in binary for bulk use: per
//!   input a little-endian `u32` count `n`, then `n` `u32` indices, then `n`
//!   `f32` values.
//! - `classifier-features signal`: like `extract`, but writes the values the
//!   difficulty score reads, `[v, ...]` in the order of `signal_names`.
//! - `classifier-features predict [model.json]`: like `extract`, but writes the
//!   model's `{"tasks":{..},"needs_strong":p,"confidence":c}` per input (the
//!   compiled-in model when no path is given).
//! - `classifier-features heuristic`: like `extract`, but writes the
//!   hand-weighted heuristic's answer (the baseline of the evaluation).
#![expect(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "an example reports on the terminal"
)]

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use routing_core::classifier::{self, Model, features, signal};
use serde_json::{Value, json};

fn text_of(line: &str) -> Result<String, String> {
    match serde_json::from_str::<Value>(line).map_err(|e| e.to_string())? {
        Value::String(s) => Ok(s),
        Value::Object(mut o) => match o.remove("text") {
            Some(Value::String(s)) => Ok(s),
            _ => Err("object without a string `text`".to_owned()),
        },
        _ => Err("expected a string or an object with `text`".to_owned()),
    }
}

fn each_line(mut emit: impl FnMut(&str) -> Value) -> Result<(), String> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let text = text_of(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        writeln!(out, "{}", emit(&text)).map_err(|e| format!("stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("stdout: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("info") => {
            let info = json!({
                "feature_version": features::FEATURE_VERSION,
                "dim": features::DIM,
                "dense_dim": features::DENSE_DIM,
                "hash_dim": features::HASH_DIM,
                "dense_names": features::DENSE_NAMES,
                "fingerprint": features::fingerprint(),
                "signal_version": signal::SIGNAL_VERSION,
                "signal_names": signal::SIGNAL_NAMES,
            });
            println!("{info}");
            Ok(())
        }
        Some("extract") => each_line(|text| {
            let f = features::extract(text);
            json!({"i": f.indices, "v": f.values})
        }),
        Some("signal") => each_line(|text| json!(signal::extract_text(text))),
        Some("extract-bin") => {
            let stdin = std::io::stdin().lock();
            let mut out = BufWriter::new(std::io::stdout().lock());
            for (n, line) in stdin.lines().enumerate() {
                let line = line.map_err(|e| format!("stdin: {e}"))?;
                let text = text_of(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
                let f = features::extract(&text);
                let count = u32::try_from(f.len()).map_err(|e| e.to_string())?;
                let mut buf = Vec::with_capacity(4 + 8 * f.len());
                buf.extend_from_slice(&count.to_le_bytes());
                f.indices
                    .iter()
                    .for_each(|i| buf.extend_from_slice(&i.to_le_bytes()));
                f.values
                    .iter()
                    .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
                out.write_all(&buf).map_err(|e| format!("stdout: {e}"))?;
            }
            out.flush().map_err(|e| format!("stdout: {e}"))
        }
        Some("predict") => {
            let model = match args.get(1) {
                Some(path) => Model::from_path(std::path::Path::new(path)),
                None => classifier::default_model().cloned().map_err(Clone::clone),
            }
            .map_err(|e| e.to_string())?;
            each_line(|text| {
                let p = model.predict(text);
                let tasks: serde_json::Map<String, Value> = p
                    .task_probs
                    .iter()
                    .map(|(t, v)| (t.as_str().to_owned(), json!(v)))
                    .collect();
                json!({
                    "tasks": tasks,
                    "needs_strong": p.needs_strong,
                    "quality": p.quality.map(|q| json!({"weak": q.weak, "strong": q.strong})),
                    "confidence": p.confidence(),
                })
            })
        }
        Some("heuristic") => each_line(|text| {
            serde_json::to_value(classifier::lexical::classify(text)).unwrap_or(Value::Null)
        }),
        _ => Err(
            "usage: classifier-features info | extract | extract-bin | signal | predict [model.json] | heuristic"
                .to_owned(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("classifier-features: {e}");
            ExitCode::FAILURE
        }
    }
}
