#!/usr/bin/env bash
# The front door under an attacker that holds idle sockets: the victim
# service's echo and the control API, quiet and then while ATTACK_SOCKETS
# idle sockets (no request ever sent, reopened as the gateway closes them)
# are held from 127.0.0.2-254. Builds release binaries and the Rust echo
# handler; the gateway is pinned to core 0, the clients to core 1. Prints a
# table with attacked/quiet ratios and the gateway's memory per attacker
# socket. About two minutes.
#
# Knobs: ATTACK_SOCKETS (15000; the open-file hard limit here is 20,000),
# SECONDS_PER_RUN (5), HEADER_TIMEOUT_MS (10000, the gateway's default).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
ATTACK=${ATTACK_SOCKETS:-15000}
RUN_S=${SECONDS_PER_RUN:-5}
HEADER_MS=${HEADER_TIMEOUT_MS:-10000}
PORT=18280 CONTROL=18281

ulimit -n "$(ulimit -Hn)"
echo "== building (release)" >&2
cargo build --release -p wasmgate -p wasmgate-loadgen >&2
cargo build -p echo --target wasm32-wasip2 --profile wasm >&2
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/plugins/echo"
cp "$TARGET/wasm32-wasip2/wasm/echo.wasm" "$WORK/plugins/echo/handler.wasm"

taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$PORT" --control-listen "127.0.0.1:$CONTROL" \
    --plugins "$WORK/plugins" --no-watch --memory-state --cache-dir "$WORK/cache" \
    --header-timeout-ms "$HEADER_MS" >"$WORK/gateway.log" 2>&1 &
GW=$!; PIDS+=("$GW")
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$CONTROL/healthz" 2>/dev/null | grep -q '"loaded":true' && break; sleep 0.1; done
LG="$TARGET/release/loadgen"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
declare -A R
record() {  # LABEL LINE
    echo "$1: $2" >&2
    for kv in ${2#RESULT }; do R[$1.${kv%%=*}]=${kv#*=}; done
}

measure() {  # LABEL
    local echo_line control_line
    taskset -c 1 "$LG" --addr "127.0.0.1:$CONTROL" http-latency --path /push/echo --seconds "$RUN_S" \
        >"$WORK/control.txt" &
    local probe=$!
    echo_line=$(taskset -c 1 "$LG" --addr "127.0.0.1:$PORT" --service echo echo --connections 64 --seconds "$RUN_S" | grep '^RESULT')
    wait "$probe"
    control_line=$(grep '^RESULT' "$WORK/control.txt")
    record "$1.echo" "$echo_line"
    record "$1.control" "$control_line"
}

echo "== quiet" >&2
sleep 1
measure quiet
R[quiet.rss]=$(rss "$GW")

echo "== attacked: $ATTACK idle sockets" >&2
HOLD_S=$((RUN_S + 25))
taskset -c 1 "$LG" --addr "127.0.0.1:$PORT" --server-pid "$GW" hold --sockets "$ATTACK" --seconds "$HOLD_S" \
    >"$WORK/hold.txt" &
ATTACKER=$!; PIDS+=("$ATTACKER")
# Memory and descriptors once every attacker socket is open, before the
# first of them reaches the header timeout.
sleep 7
R[attacked.rss]=$(rss "$GW")
R[attacked.open_fds]=$(ls "/proc/$GW/fd" | wc -l)
# The measurement then spans the header timeout's first sweep: the gateway
# closes the attacker's sockets and the attacker reopens them.
sleep 3
measure attacked
wait "$ATTACKER" || true
record attacker "$(grep '^RESULT' "$WORK/hold.txt")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0) printf "%.2f", a/b; else printf "-" }'; }
g() { echo "${R[$1]:-}"; }
echo
printf '%-32s %10s %10s %16s\n' measurement quiet attacked attacked/quiet
row() { printf '%-32s %10s %10s %16s\n' "$1" "$2" "$3" "$(ratio "$3" "$2")"; }
row "victim echo c=64 msgs/s" "$(g quiet.echo.msgs_per_s)" "$(g attacked.echo.msgs_per_s)"
row "victim echo p50 us" "$(g quiet.echo.p50_us)" "$(g attacked.echo.p50_us)"
row "victim echo p99 us" "$(g quiet.echo.p99_us)" "$(g attacked.echo.p99_us)"
row "victim echo errors" "$(g quiet.echo.errors)" "$(g attacked.echo.errors)"
row "control GET /push/echo p50 us" "$(g quiet.control.p50_us)" "$(g attacked.control.p50_us)"
row "control GET /push/echo p99 us" "$(g quiet.control.p99_us)" "$(g attacked.control.p99_us)"
row "control errors" "$(g quiet.control.errors)" "$(g attacked.control.errors)"
echo
held=$(g attacker.held_mid)
echo "attacker: $ATTACK sockets, $held held at mid-run, $(g attacker.reconnects) reopened after the gateway closed them, $(g attacker.refused) refused with 503, $(g attacker.failed) failed to connect"
open_fds=$(g attacked.open_fds)
echo "gateway: RSS $(g quiet.rss) KiB quiet, $(g attacked.rss) KiB with $open_fds descriptors open ($(awk -v a="$(g attacked.rss)" -v q="$(g quiet.rss)" -v n="$open_fds" 'BEGIN{ if (n > 0) printf "%.2f", (a - q) / n; else printf "-" }') KiB per open descriptor)"
