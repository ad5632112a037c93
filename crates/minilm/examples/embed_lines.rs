//! Embeds texts for offline studies: reads JSON lines (each a string) on stdin and writes, per
//! line, [`minilm::DIMENSIONS`] little-endian `f32` on stdout (an empty text gives zeros).
//!
//! ```text
//! cargo run --release -p minilm --example embed_lines -- MODEL_DIR < texts.jsonl > vectors.f32
//! ```
#![expect(
    clippy::print_stderr,
    reason = "an example reports its errors on the terminal"
)]

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use minilm::{DIMENSIONS, MiniLm};

/// Texts embedded per call.
const CHUNK: usize = 64;

fn run(model_dir: &str) -> Result<(), String> {
    let model = MiniLm::load(model_dir).map_err(|e| e.to_string())?;
    let mut texts: Vec<String> = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let text: String =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        texts.push(text);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for chunk in texts.chunks(CHUNK) {
        let present: Vec<&str> = chunk
            .iter()
            .map(String::as_str)
            .filter(|t| !t.trim().is_empty())
            .collect();
        let mut vectors = model
            .embed(&present)
            .map_err(|e| e.to_string())?
            .into_iter();
        for text in chunk {
            let v = if text.trim().is_empty() {
                vec![0.0; DIMENSIONS]
            } else {
                vectors.next().ok_or("missing vector")?
            };
            for x in v {
                out.write_all(&x.to_le_bytes())
                    .map_err(|e| format!("stdout: {e}"))?;
            }
        }
    }
    out.flush().map_err(|e| format!("stdout: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir] = args.as_slice() else {
        eprintln!("usage: embed_lines MODEL_DIR < texts.jsonl > vectors.f32");
        return ExitCode::from(2);
    };
    match run(model_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed_lines: {e}");
            ExitCode::FAILURE
        }
    }
}
