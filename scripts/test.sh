#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, unit tests, the guest SDK's
# tests and the integration tests (which build every handler from source).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo test -p wasmgate-guest
cargo test
