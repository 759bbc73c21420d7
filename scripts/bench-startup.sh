#!/usr/bin/env bash
# Start-up time of `wasmgate serve` with and without the compile cache: time
# from launch until /healthz answers and until every service has loaded
# (control /healthz "loaded": true), for the example and test handlers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo xtask build-plugins >/dev/null
cargo xtask build-test-plugins >/dev/null
cargo build --release -q -p wasmgate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for dir in plugins/*/ tests/plugins/*/; do
    name=$(basename "$dir")
    [ -f "$dir/handler.wasm" ] || continue
    mkdir -p "$work/plugins/$name"
    cp "$dir/handler.wasm" "$work/plugins/$name/"
done
total=$(du -cb "$work"/plugins/*/handler.wasm | tail -1 | cut -f1)
echo "services: $(ls "$work/plugins" | tr '\n' ' ')($((total / 1024)) KiB of wasm)"
port=$((20000 + RANDOM % 10000))
measure() {
    local label=$1; shift
    local start end
    start=$(date +%s%N)
    target/release/wasmgate serve --listen 127.0.0.1:$port --control-listen 127.0.0.1:$((port + 1)) --plugins "$work/plugins" --no-watch "$@" 2>/dev/null &
    local pid=$!
    until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.005; done
    local listening
    listening=$(date +%s%N)
    until curl -sf "http://127.0.0.1:$((port + 1))/healthz" 2>/dev/null | grep -q '"loaded":true'; do sleep 0.005; done
    end=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$label: $(( (listening - start) / 1000000 )) ms to the first answered request, $(( (end - start) / 1000000 )) ms until every service has loaded"
}
measure "no cache          " --no-cache
measure "cold cache (fills)" --cache-dir "$work/cache"
measure "warm cache        " --cache-dir "$work/cache"
