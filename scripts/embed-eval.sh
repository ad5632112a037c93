#!/usr/bin/env bash
# Measures the local embedding model's quality: STS Benchmark Spearman
# correlation (x100) between cosine similarity and human scores, on the test
# split (all-MiniLM-L6-v2's published figure: 82.0) and the dev split.
#
#   scripts/embed-eval.sh [STS_DIR]     # STS_DIR defaults to ../shared/data/sts-b
#
# Prints figures; asserts nothing. Fetches the model first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

STS_DIR="${1:-../shared/data/sts-b}"
MODEL_DIR="${MINILM_MODEL_DIR:-functions/embed/assets/model}"
[[ -n "${MINILM_MODEL_DIR:-}" ]] || scripts/fetch-model.sh "$MODEL_DIR"

cargo build --release --locked -p minilm --example sts_eval
set -x
target/release/examples/sts_eval "$MODEL_DIR" \
  "$STS_DIR/original_sts-test.tsv" "$STS_DIR/original_sts-dev.tsv"
