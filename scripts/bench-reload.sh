#!/usr/bin/env bash
# Hot-reload benchmark: write-to-live latency and 100 swaps under echo traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo xtask build-plugins
cargo xtask build-test-plugins
cargo run --release -q -p wasmgate --example reload_bench -- \
    plugins/echo/handler.wasm tests/plugins/probe/handler.wasm "${1:-100}"
