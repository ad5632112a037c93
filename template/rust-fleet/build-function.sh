#!/bin/sh
# Builds a fleet function's one binary the way its image does, and puts it
# with its assets in OUT_DIR:
#
#   build-function.sh HANDLER_DIR OUT_DIR
#
#   OUT_DIR/handler   the package's binary (the bin named like the package)
#   OUT_DIR/assets/   the handler folder's assets/, if any
#
# - Exactly one binary: `cargo build --bin <package name>`, copied by name from
#   the target triple's release folder. Whatever else the target directory
#   holds (a cache shared with other functions) is never picked.
# - The release profile comes from CARGO_PROFILE_RELEASE_* (the Dockerfile sets
#   the workspace's [profile.release]; the build context has no workspace root).
# - The target is CARGO_BUILD_TARGET when set (the Dockerfile sets it from
#   TARGETPLATFORM), else the host.
# - Assets with a checksum list (HANDLER_DIR/assets.sha256, `sha256sum -c`
#   format, paths relative to HANDLER_DIR) must all be present and match it,
#   else the build fails: an image without its model must not be built.
#
# BUILD_CARGO (default cargo) runs the build: the Dockerfile sets xx-cargo, which
# cross-compiles for TARGETPLATFORM. Runs under busybox sh and bash alike.
set -eu
handler=${1:?usage: build-function.sh HANDLER_DIR OUT_DIR}
out=${2:?usage: build-function.sh HANDLER_DIR OUT_DIR}
cargo=${BUILD_CARGO:-cargo}

cd "$handler"
name=$(sed -n '/^\[package\]/,/^\[/s/^name *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
if [ -z "$name" ]; then
    echo "build-function: no package name in $handler/Cargo.toml" >&2
    exit 1
fi

if [ -f assets.sha256 ]; then
    if ! sha256sum -c assets.sha256 >&2; then
        echo "build-function: $name's assets are missing or do not match assets.sha256;" \
            "fetch them first (the embed model: scripts/fetch-model.sh)" >&2
        exit 1
    fi
fi

# shellcheck disable=SC2086 # BUILD_CARGO may carry arguments
$cargo build --release --bin "$name"

target_dir=${CARGO_TARGET_DIR:-target}
triple=${CARGO_BUILD_TARGET:-}
if [ -n "$triple" ]; then
    binary="$target_dir/$triple/release/$name"
else
    binary="$target_dir/release/$name"
fi
if [ ! -x "$binary" ]; then
    echo "build-function: cargo built no $binary" >&2
    exit 1
fi

mkdir -p "$out/assets"
cp "$binary" "$out/handler"
if [ -d assets ]; then
    cp -R assets/. "$out/assets/"
fi
echo "build-function: $name -> $out/handler ($(wc -c < "$out/handler") bytes)" >&2
