#!/usr/bin/env bash
# Cold-builds one function from its shrinkwrapped build context the way the
# template's Dockerfile does: `faas-cli build --shrinkwrap` (the real faas-cli
# from $OPENFAAS_BIN_DIR, default target/openfaas; else the same copy made by
# hand), the shared crates at /src/crates, the handler at
# /src/functions/handler, no workspace root, an empty target directory, the
# Dockerfile's CARGO_PROFILE_RELEASE_* and template/rust-fleet/build-function.sh.
# Prints the wall and CPU time, the number of packages compiled, the binary's
# size, whether it is stripped, and how many executables the build put out.
#
#   scripts/context-build.sh provider-proxy            # this checkout
#   scripts/context-build.sh classify ../other         # another checkout
#
# Builds for the host (the image builds for musl with xx); the crates compiled
# are the same. Registry sources must already be in cargo's cache (--offline).
set -euo pipefail
fn=${1:?usage: context-build.sh FUNCTION [REPO]}
repo=$(cd "${2:-$(dirname "$0")/..}" && pwd)
[ -f "$repo/functions/$fn/Cargo.toml" ] || { echo "no function $fn in $repo" >&2; exit 2; }
faas_cli="${OPENFAAS_BIN_DIR:-$repo/target/openfaas}/faas-cli"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo"
for path in crates functions template stack.yml Cargo.lock; do
    cp -r "$repo/$path" "$work/repo/$path"
done
find "$work/repo" -name target -type d -prune -exec rm -rf {} +
if [ -x "$faas_cli" ]; then
    (cd "$work/repo" && "$faas_cli" build --shrinkwrap -f stack.yml --filter "$fn" >/dev/null)
    context="$work/repo/build/$fn"
else
    echo "context-build: no faas-cli at $faas_cli; copying the context by hand" >&2
    context="$work/context"
    mkdir -p "$context/function"
    cp -r "$repo/template/rust-fleet/." "$context/"
    cp -r "$repo/functions/$fn/." "$context/function/"
    cp -r "$repo/crates" "$context/function/crates"
    cp "$repo/Cargo.lock" "$context/function/Cargo.lock"
fi

# The Dockerfile's build stage: COPY function/crates ./crates; COPY function
# ./functions/handler; rm -rf ./functions/handler/crates.
mkdir -p "$work/src/functions"
cp -r "$context/function/crates" "$work/src/crates"
cp -r "$context/function" "$work/src/functions/handler"
rm -rf "$work/src/functions/handler/crates"

# The Dockerfile's CARGO_PROFILE_RELEASE_* settings.
while read -r pair; do
    export "${pair%%=*}=$(printf '%s' "${pair#*=}" | tr -d '"')"
done < <(grep -o 'CARGO_PROFILE_RELEASE_[A-Z_]*="[^"]*"' "$context/Dockerfile")
env | grep '^CARGO_PROFILE_RELEASE_' | sort >&2

cd "$work/src/functions/handler"
packages=$(cargo tree --offline -e normal,build --prefix none 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
/usr/bin/time -f '%e %U %S' -o "$work/time" \
    env CARGO_TARGET_DIR="$work/target" CARGO_NET_OFFLINE=true \
    sh "$context/build-function.sh" "$work/src/functions/handler" "$work/out"
read -r wall user sys < "$work/time"
size=$(stat -c %s "$work/out/handler")
executables=$(find "$work/out" -type f -perm -u+x | wc -l)
if readelf -S "$work/out/handler" | grep -q '\.symtab'; then stripped=no; else stripped=yes; fi
printf '%s: %s packages, build %.0f s wall, %.0f s CPU, binary %.1f MB, stripped: %s, executables out: %s\n' \
    "$fn" "$packages" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$size / 1000000" | bc -l)" \
    "$stripped" "$executables"
