#!/usr/bin/env bash
# Replays RouteLLM's labelled MMLU responses (weak Mixtral-8x7B vs strong
# GPT-4, correct or not per prompt) through the routing policy and prints the
# cost–quality curve: share of strong-model calls against accuracy recovered,
# with always-weak, always-strong and random baselines at the same share.
#
# Usage: scripts/eval-routing.sh [--data DIR] [--split test|val|train|all]
#   --data   folder of responses/*.csv (default ../shared/data/routellm-mmlu/mmlu/responses)
#   --split  test (default): only prompts the classifier did not train on
set -euo pipefail
cd "$(dirname "$0")/.."
data="../shared/data/routellm-mmlu/mmlu/responses"
args=()
while (($#)); do
    case "$1" in
        --data) data="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [[ ! -d "$data" ]]; then
    echo "eval-routing: no data folder $data (RouteLLM MMLU responses)" >&2
    exit 2
fi
exec cargo run --release --quiet -p routing-core --example eval_routing -- --data "$data" "${args[@]}"
