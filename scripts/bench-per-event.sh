#!/usr/bin/env bash
# Criterion benchmarks of the per-event path (host/benches/per_event.rs):
# builds the Rust echo handler, then times event JSON build, instantiation,
# the transfer call with its push, answer parse, reverse push and the whole
# event, fresh instance and instance reuse. Extra arguments go to criterion
# (e.g. a filter such as `event_`).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -p echo --target wasm32-wasip2 --profile wasm >&2
ECHO_WASM=$TARGET/wasm32-wasip2/wasm/echo.wasm \
    cargo bench -p wasmgate --bench per_event -- "$@"
