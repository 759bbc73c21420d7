#!/usr/bin/env bash
# Installs what building and testing wasmgate needs beyond the Rust toolchain:
# the wasm32-wasip2 target. Safe to run again; does nothing when all is there.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi
