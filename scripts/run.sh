#!/usr/bin/env bash
# Builds the example plugins and starts the gateway with them.
# Extra arguments go to `wasmgate serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo xtask build-plugins
cargo build --release -p wasmgate
exec target/release/wasmgate serve --plugins plugins "$@"
