#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, unit tests, the guest SDK's
# tests and the integration tests (which build every handler from source).
set -euo pipefail
cd "$(dirname "$0")/.."

# A full run from a clean clone (toolchains, debug and wasm builds, test
# binaries) peaks at about 5.5 GiB under target/. Say so up front instead of
# failing deep in a compiler error when the disk is nearly full.
avail_mib=$(df -Pm . | awk 'NR == 2 { print $4 }')
echo "test: ${avail_mib} MiB free for target/ (a clean run needs about 5,600)"
if [ "${avail_mib:-0}" -lt 6144 ]; then
    echo "test: warning: less than 6 GiB free; the build may run out of disk" >&2
fi
# One-shot CI builds gain nothing from incremental state; it only costs disk.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

scripts/setup.sh
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
cargo clippy -p wasmgate-loadgen --all-targets -- -D warnings
cargo clippy -p xtask --features componentize --all-targets -- -D warnings
# Handlers (guest SDK, example and test plugins) are linted for their target.
cargo clippy --target wasm32-wasip2 -p wasmgate-guest -p echo -p chat -p clock -p probe -p hostile -p counter -p web -p before-triggers -- -D warnings
cargo test -p wasmgate-guest
cargo test
