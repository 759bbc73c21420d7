#!/usr/bin/env bash
# Per-language benchmark: size, compile time and echo rate (fresh instance per
# event and reused instances) of the echo handlers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo xtask build-plugins
handlers=()
for dir in plugins/*/; do
    name="$(basename "$dir")"
    if [ -f "$dir/handler.wasm" ] && [[ "$name" == echo* || "$name" == seed-* ]]; then
        handlers+=("$name=$dir/handler.wasm")
    fi
done
cargo run --release -q -p wasmgate --example lang_bench -- "$@" "${handlers[@]}"
