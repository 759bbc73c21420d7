#!/usr/bin/env bash
# Noisy-neighbour benchmark: B's echo p50/p99 quiet and while A spins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo xtask build-plugins >/dev/null
cargo xtask build-test-plugins >/dev/null
cargo run --release -q -p wasmgate --example noisy_neighbour -- \
    plugins/echo/handler.wasm tests/plugins/probe/handler.wasm
