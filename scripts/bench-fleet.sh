#!/usr/bin/env bash
# Load benchmark of the whole fleet on loopback (release build): the same
# request straight to the Groq emulator, through provider-proxy and through
# llm-router, side by side, with each path's p50 as a ratio of the direct
# call's. Usage: scripts/bench-fleet.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
target/release/fleet-load "${1:-2000}" "${2:-16}"
