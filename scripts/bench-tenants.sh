#!/usr/bin/env bash
# What other tenants cost one service, as users run the gateway: the
# watcher on. Builds release binaries and the Rust echo handler, then runs
# three gateways one after the other, each pinned to core 0 with the load
# generator on core 1:
#   alone   - the service `echo` only;
#   crowded - `echo` plus TENANTS idle copies of it, each its own service;
#   nowatch - the same crowd, with --no-watch.
# For each it reports the idle cost (CPU and bytes read in IDLE_S seconds
# with no client) and echo through `echo` (64 connections, SECONDS_PER_RUN),
# and prints crowded/alone and crowded/nowatch ratios from this one run.
#
# Knobs: TENANTS (100), IDLE_S (5), SECONDS_PER_RUN (5).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
TENANTS=${TENANTS:-100}
IDLE_S=${IDLE_S:-5}
RUN_S=${SECONDS_PER_RUN:-5}
PORT=18180

echo "== building (release)" >&2
cargo build --release -p wasmgate -p wasmgate-loadgen >&2
cargo build -p echo --target wasm32-wasip2 --profile wasm >&2
ECHO_WASM=$TARGET/wasm32-wasip2/wasm/echo.wasm
WORK=$(mktemp -d)
GW_PID=
cleanup() {
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

make_plugins() {  # FOLDER COPIES
    mkdir -p "$1/echo"
    cp "$ECHO_WASM" "$1/echo/handler.wasm"
    for n in $(seq 1 "$2"); do
        mkdir -p "$1/tenant-$n"
        cp "$ECHO_WASM" "$1/tenant-$n/handler.wasm"
    done
}
make_plugins "$WORK/alone" 0
make_plugins "$WORK/crowded" "$TENANTS"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rchar() { awk '/^rchar/{print $2}' "/proc/$1/io"; }
CLK_TCK=$(getconf CLK_TCK)
declare -A R

run() {  # NAME PLUGINS EXTRA-FLAGS...
    local name=$1 plugins=$2; shift 2
    taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$PORT" --control-listen "127.0.0.1:$((PORT + 1))" --plugins "$plugins" \
        --cache-dir "$WORK/cache" --memory-state "$@" >"$WORK/$name.log" 2>&1 &
    GW_PID=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$((PORT + 1))/healthz" 2>/dev/null | grep -q '"loaded":true' && break
        sleep 0.1
    done
    sleep 2
    local t0 r0 t1 r1
    t0=$(ticks $GW_PID); r0=$(rchar $GW_PID)
    sleep "$IDLE_S"
    t1=$(ticks $GW_PID); r1=$(rchar $GW_PID)
    R[$name.idle_cpu_pct]=$(awk -v t=$((t1 - t0)) -v h="$CLK_TCK" -v s="$IDLE_S" 'BEGIN{printf "%.1f", 100*t/h/s}')
    R[$name.idle_read_kib_s]=$(awk -v b=$((r1 - r0)) -v s="$IDLE_S" 'BEGIN{printf "%.1f", b/1024/s}')
    local line
    line=$(taskset -c 1 "$TARGET/release/loadgen" --addr "127.0.0.1:$PORT" --server-pid "$GW_PID" \
        --service echo echo --connections 64 --seconds "$RUN_S" | grep '^RESULT') || line="RESULT failed=1"
    echo "$name: $line" >&2
    for kv in ${line#RESULT }; do R[$name.${kv%%=*}]=${kv#*=}; done
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
}

run alone "$WORK/alone"
run crowded "$WORK/crowded"
run nowatch "$WORK/crowded" --no-watch

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0) printf "%.2f", a/b; else printf "-" }'; }
g() { echo "${R[$1]:-}"; }
echo
echo "echo alone vs. echo beside $TENANTS idle tenants (watcher on unless noted)"
printf '%-28s %10s %10s %10s %15s %15s\n' measurement alone crowded nowatch crowded/alone crowded/nowatch
for m in msgs_per_s p50_us p99_us idle_cpu_pct idle_read_kib_s; do
    printf '%-28s %10s %10s %10s %15s %15s\n' "$m" "$(g alone.$m)" "$(g crowded.$m)" "$(g nowatch.$m)" \
        "$(ratio "$(g crowded.$m)" "$(g alone.$m)")" "$(ratio "$(g crowded.$m)" "$(g nowatch.$m)")"
done
