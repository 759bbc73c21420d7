#!/usr/bin/env bash
# Installs what building and testing wasmgate needs beyond the Rust toolchain:
# the wasm32-wasip2 target, then every handler language's toolchain through
# the scripts in scripts/toolchains/ (each installs into target/toolchains/ or
# from the system's package manager, and does nothing when all is there).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

shopt -s nullglob
for toolchain in scripts/toolchains/*.sh; do
    bash "$toolchain"
done
