#!/usr/bin/env bash
# Builds the Zig echo handler into the core module OUTPUT ($1), for
# wasm32-freestanding (no WASI). Toolchain: scripts/toolchains/zig.sh (the
# PyPI package `ziglang` in target/toolchains/zig; run scripts/setup.sh).
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"
python="$root/target/toolchains/zig/bin/python"

if ! "$python" -m ziglang version >/dev/null 2>&1; then
    echo "echo-zig: the Zig toolchain (PyPI ziglang in target/toolchains/zig) is missing: run scripts/setup.sh" >&2
    exit 3
fi

export ZIG_GLOBAL_CACHE_DIR="$root/target/zig-cache"
export ZIG_LOCAL_CACHE_DIR="$root/target/zig-cache"
"$python" -m ziglang build-exe -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall \
    -fstrip --dep wasmgate -Mroot=echo.zig -Mwasmgate="$root/guest-sdk/zig/wasmgate.zig" \
    -femit-bin="$output"
