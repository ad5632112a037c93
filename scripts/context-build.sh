#!/usr/bin/env bash
# Cold-builds one function the way the template's Dockerfile does: the shared
# crates at /src/crates, the handler at /src/functions/handler, the workspace
# Cargo.lock beside it, no workspace root, an empty target directory and
# `cargo build --release`. Prints the wall and CPU time of the build, the
# number of packages it compiles and the size of the binary.
#
#   scripts/context-build.sh classify            # this checkout
#   scripts/context-build.sh classify ../other   # another checkout, to compare
#
# Builds for the host (the image builds for musl); the crates compiled are the
# same. Registry sources must already be in cargo's cache (it runs --offline).
set -euo pipefail
fn=${1:?usage: context-build.sh FUNCTION [REPO]}
repo=$(cd "${2:-$(dirname "$0")/..}" && pwd)
[ -f "$repo/functions/$fn/Cargo.toml" ] || { echo "no function $fn in $repo" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/functions"
cp -r "$repo/crates" "$work/src/crates"
cp -r "$repo/functions/$fn" "$work/src/functions/handler"
rm -rf "$work/src/functions/handler/target" "$work/src/functions/handler/assets"
find "$work/src/crates" -maxdepth 2 -name target -type d -prune -exec rm -rf {} +
cp "$repo/Cargo.lock" "$work/src/functions/handler/Cargo.lock"

cd "$work/src/functions/handler"
packages=$(cargo tree --offline -e normal,build --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
/usr/bin/time -f '%e %U %S' -o "$work/time" \
    cargo build --release --offline --quiet --target-dir "$work/target"
read -r wall user sys < "$work/time"
binary=$(find "$work/target/release" -maxdepth 1 -type f -perm -u+x | head -n 1)
size=$(stat -c %s "$binary")
printf '%s: %s packages, build %.0f s wall, %.0f s CPU, binary %.1f MB\n' \
    "$fn" "$packages" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$size / 1000000" | bc -l)"
