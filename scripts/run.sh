#!/usr/bin/env bash
# Builds the example plugins and starts the gateway with them. Needs only a
# Rust toolchain (rustup adds the wasm32-wasip2 target): the Rust and WAT
# examples are always built, those in other languages when their toolchain
# is installed (scripts/setup.sh installs them all; scripts/test.sh does).
# Extra arguments go to `wasmgate serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo xtask build-plugins --skip-missing-toolchains
cargo build --release -p wasmgate
exec target/release/wasmgate serve --plugins plugins "$@"
