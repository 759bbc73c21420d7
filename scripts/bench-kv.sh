#!/usr/bin/env bash
# Key-value operations per second, redb vs Redis in one run, and Redis's
# memory per row: starts its own redis-server (appendonly yes, appendfsync
# everysec, as the README recommends for the store) on a free port in a
# folder under target/, runs host/examples/kv_backends.rs, stops it.
#
# Knobs: STATE_DIR (target/, on the same disk as a real state file).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=${STATE_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}
cargo build --release -q -p wasmgate --example kv_backends
work=$(mktemp -d "$STATE_DIR/bench-kv.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' \
    --appendonly yes --appendfsync everysec >"$work/redis.log" 2>&1 &
redis=$!
trap 'kill $redis 2>/dev/null; wait $redis 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), $(nproc) cores"
cargo run --release -q -p wasmgate --example kv_backends -- "$work" "redis://127.0.0.1:$port"
