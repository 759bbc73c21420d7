#!/usr/bin/env bash
# Builds the C echo handler into the component OUTPUT ($1): clang 14 compiles
# echo.c against wasi-libc into a core module (a reactor: no main), then
# `xtask componentize` adds the handler world and the WASI preview-1 adapter.
# Toolchain: scripts/toolchains/c.sh (run scripts/setup.sh).
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"

clang=clang-14
if ! command -v "$clang" >/dev/null || [[ ! -f /usr/lib/wasm32-wasi/libc.a ]] || ! command -v wasm-ld-14 >/dev/null; then
    echo "echo-c: the C toolchain (clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32) is missing: run scripts/setup.sh" >&2
    exit 3
fi

work="$root/target/plugin-build/echo-c"
mkdir -p "$work"
# -fuse-ld: clang-14 looks for wasm-ld, which Debian ships as wasm-ld-14.
"$clang" --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -fuse-ld=lld \
    -Os -Wall -Wextra -Werror -I "$root/guest-sdk/c" \
    -Wl,--strip-all \
    -o "$work/core.wasm" echo.c

# A separate target directory: the calling build may hold the lock on target/.
cargo run --quiet --manifest-path "$root/Cargo.toml" -p xtask --features componentize \
    --target-dir "$root/target/tools" -- componentize "$work/core.wasm" "$output"
