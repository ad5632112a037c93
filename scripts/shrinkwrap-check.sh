#!/usr/bin/env bash
# Reproduces `faas-cli build --shrinkwrap -f stack.yml` without Docker, prints
# each function's build context and checks cargo resolves it on its own (see
# tests/tests/build_context.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked -p fleet-tests --test build_context -- --nocapture
