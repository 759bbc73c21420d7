#!/usr/bin/env bash
# What the metrics cost the per-event path: echo throughput of this tree's
# gateway against the same gateway built from BASE (by default the commit
# this branch left main at, before /metrics existed), in one run, rounds
# alternating so drift on a shared machine hits both alike. Each gateway is
# pinned to core 0 and the load generator to core 1; 64 connections echo
# through the Rust `echo` handler for SECONDS_PER_RUN.
#
# Knobs: BASE (merge-base with main), PROFILE (release), ROUNDS (3),
# SECONDS_PER_RUN (5).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR=$TARGET
BASE=${BASE:-$(git merge-base HEAD main)}
PROFILE=${PROFILE:-release}
ROUNDS=${ROUNDS:-3}
RUN_S=${SECONDS_PER_RUN:-5}
PORT=18280
OUT=$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

WORK=$(mktemp -d)
GW_PID=
cleanup() {
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building $BASE ($PROFILE) as the baseline" >&2
mkdir -p "$WORK/base"
git archive "$BASE" | tar -x -C "$WORK/base"
cargo build --profile "$PROFILE" -p wasmgate --manifest-path "$WORK/base/Cargo.toml" >&2
cp "$OUT/wasmgate" "$WORK/wasmgate-base"
echo "== building this tree ($PROFILE)" >&2
cargo build --profile "$PROFILE" -p wasmgate -p wasmgate-loadgen >&2
cp "$OUT/wasmgate" "$WORK/wasmgate-metrics"
cargo build -p echo --target wasm32-wasip2 --profile wasm >&2
mkdir -p "$WORK/plugins/echo"
cp "$TARGET/wasm32-wasip2/wasm/echo.wasm" "$WORK/plugins/echo/handler.wasm"

declare -A SUM
run() {  # NAME
    local name=$1
    taskset -c 0 "$WORK/wasmgate-$name" serve --listen "127.0.0.1:$PORT" --control-listen "127.0.0.1:$((PORT + 1))" \
        --plugins "$WORK/plugins" --cache-dir "$WORK/cache" --memory-state >"$WORK/$name.log" 2>&1 &
    GW_PID=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$((PORT + 1))/healthz" 2>/dev/null | grep -q '"loaded":true' && break
        sleep 0.1
    done
    local line rate
    line=$(taskset -c 1 "$OUT/loadgen" --addr "127.0.0.1:$PORT" --server-pid "$GW_PID" \
        --service echo echo --connections 64 --seconds "$RUN_S" | grep '^RESULT') || line="RESULT msgs_per_s=0"
    echo "$name: $line" >&2
    rate=$(tr ' ' '\n' <<<"$line" | awk -F= '$1=="msgs_per_s"{print $2}')
    SUM[$name]=$(awk -v a="${SUM[$name]:-0}" -v b="${rate:-0}" 'BEGIN{print a+b}')
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
}

for _ in $(seq 1 "$ROUNDS"); do
    run base
    run metrics
done
base=$(awk -v s="${SUM[base]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
metrics=$(awk -v s="${SUM[metrics]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
echo
echo "echo msgs/s, mean of $ROUNDS runs of ${RUN_S}s ($PROFILE): base $BASE $base, with metrics $metrics," \
    "ratio $(awk -v a="$metrics" -v b="$base" 'BEGIN{printf "%.3f", a/b}')"
