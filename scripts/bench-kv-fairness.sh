#!/usr/bin/env bash
# Key-value writer fairness: service B's kv.set p50/p99 quiet, and while
# service A writes at full speed (at its key cap, then replacing 1 KiB
# values), on one state file on disk. Prints the ratios to quiet.
#
# Knobs: STATE_DIR (target/, on the same disk as a real state file).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=${STATE_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
cargo run --release -q -p wasmgate --example kv_fairness -- "$STATE_DIR"
