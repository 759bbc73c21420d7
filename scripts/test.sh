#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, unit tests, the guest SDK's
# tests and the integration tests (which build every handler from source).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy -p wasmgate-loadgen --all-targets -- -D warnings
cargo clippy -p xtask --features componentize --all-targets -- -D warnings
# Handlers (guest SDK, example and test plugins) are linted for their target.
cargo clippy --target wasm32-wasip2 -p wasmgate-guest -p echo -p chat -p probe -p hostile -p counter -- -D warnings
cargo test -p wasmgate-guest
cargo test
