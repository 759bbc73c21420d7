#!/usr/bin/env bash
# One command for the side-by-side performance measurement (BENCHMARKS.md,
# "Gateway vs. native vs. Pushpin"): builds release binaries and the echo
# handler, starts wasmgate, the native axum echo server and (if installable)
# Pushpin with a WebSocket-over-HTTP echo backend, each pinned to core 0 with
# the load generator on core 1, runs the load modes and prints a table.
# Everything listens on 127.0.0.1; total run time is a few minutes.
#
# Knobs (environment): SECONDS_PER_RUN (5), IDLE_CONNECTIONS (19000),
# FANOUT_CONNECTIONS (10000), PUSHPIN=1 (off by default: the Pushpin
# baseline still answers 502 to the upgrade, see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RUN_S=${SECONDS_PER_RUN:-5}
IDLE_N=${IDLE_CONNECTIONS:-19000}
FANOUT_N=${FANOUT_CONNECTIONS:-10000}
WG_PORT=18080 NATIVE_PORT=18090 PUSHPIN_PORT=18100 BACKEND_PORT=18110

ulimit -n "$(ulimit -Hn)"   # idle mode holds ~19,000 sockets on each side

echo "== building (release)" >&2
cargo build --release -p wasmgate -p wasmgate-loadgen >&2
# The Rust echo handler, built directly (what `cargo xtask build-plugins` does
# for it) so only this checkout is touched.
cargo build -p echo --target wasm32-wasip2 --profile wasm >&2
ECHO_WASM=$TARGET/wasm32-wasip2/wasm/echo.wasm
LOADGEN=$TARGET/release/loadgen

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Only the echo service, so nothing else loads.
mkdir -p "$WORK/plugins/echo"
cp "$ECHO_WASM" "$WORK/plugins/echo/handler.wasm"

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# Server CPU ticks (user + system) of $1, or of every pid in $CPU_PIDS.
cpu_ticks() {
    local total=0 p
    for p in ${CPU_PIDS:-$1}; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo $total
}
CLK_TCK=$(getconf CLK_TCK)

declare -A R   # results: R[server.metric]

# lg SERVER PID PORT ARGS...: runs the load generator on core 1, stores the
# RESULT fields as R[SERVER.<mode>.<field>] (prefix given as $LABEL).
lg() {
    local label=$1 pid=$2 port=$3; shift 3
    local before after line
    before=$(cpu_ticks "$pid")
    line=$(taskset -c 1 "$LOADGEN" --addr "127.0.0.1:$port" --server-pid "$pid" "$@" | grep '^RESULT') || line="RESULT failed=1"
    after=$(cpu_ticks "$pid")
    echo "$label: $line" >&2
    for kv in ${line#RESULT }; do R[$label.${kv%%=*}]=${kv#*=}; done
    R[$label.cpu_s]=$(awk -v t=$((after - before)) -v h="$CLK_TCK" 'BEGIN{printf "%.3f", t/h}')
}

echo_runs() {
    local name=$1 pid=$2 port=$3 svc=$4
    lg "$name.e1" "$pid" "$port" --service "$svc" echo --connections 1 --seconds "$RUN_S"
    lg "$name.e64" "$pid" "$port" --service "$svc" echo --connections 64 --seconds "$RUN_S"
}

# --- wasmgate -----------------------------------------------------------
echo "== wasmgate" >&2
taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$WG_PORT" --plugins "$WORK/plugins" \
    --no-cache --no-watch >"$WORK/wasmgate.log" 2>&1 &
WG_PID=$!; PIDS+=("$WG_PID")
wait_port $WG_PORT
echo_runs wg "$WG_PID" $WG_PORT echo
lg wg.churn "$WG_PID" $WG_PORT churn --seconds "$RUN_S"
lg wg.fanout "$WG_PID" $WG_PORT fanout --connections "$FANOUT_N"
sleep 1
lg wg.idle "$WG_PID" $WG_PORT idle --connections "$IDLE_N"
kill "$WG_PID"; wait "$WG_PID" 2>/dev/null || true

# --- native ---------------------------------------------------------------
echo "== native" >&2
taskset -c 0 "$TARGET/release/native-echo" --listen "127.0.0.1:$NATIVE_PORT" 2>"$WORK/native.log" &
NA_PID=$!; PIDS+=("$NA_PID")
wait_port $NATIVE_PORT
echo_runs na "$NA_PID" $NATIVE_PORT echo
lg na.churn "$NA_PID" $NATIVE_PORT churn --seconds "$RUN_S"
sleep 1
lg na.idle "$NA_PID" $NATIVE_PORT idle --connections "$IDLE_N"
kill "$NA_PID"; wait "$NA_PID" 2>/dev/null || true

# --- Pushpin ----------------------------------------------------------------
PP=0
if [ "${PUSHPIN:-0}" = 1 ]; then
    if ! command -v pushpin >/dev/null; then
        echo "== installing pushpin (Debian package, benchmark only)" >&2
        (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pushpin) >&2 || true
    fi
    if command -v pushpin >/dev/null; then PP=1; fi
fi
if [ $PP = 1 ]; then
    echo "== pushpin" >&2
    # A private configuration: own run and log folders, own ports (offset so
    # the internal ZeroMQ ports do not collide with a system instance), and
    # one route to the echo backend speaking WebSocket-over-HTTP.
    mkdir -p "$WORK/pushpin/run" "$WORK/pushpin/log"
    echo "* 127.0.0.1:$BACKEND_PORT,over_http" >"$WORK/pushpin/routes"
    sed -e "s|^rundir=.*|rundir=$WORK/pushpin/run|" \
        -e "s|^logdir=.*|logdir=$WORK/pushpin/log|" \
        -e "s|^port_offset=.*|port_offset=37|" \
        -e "s|^http_port=.*|http_port=$PUSHPIN_PORT|" \
        -e "s|^routesfile=.*|routesfile=$WORK/pushpin/routes|" \
        /etc/pushpin/pushpin.conf >"$WORK/pushpin/pushpin.conf"
    sed -i "s|^include={libdir}/internal.conf|include=/usr/lib/pushpin/internal.conf|" "$WORK/pushpin/pushpin.conf"
    taskset -c 0 python3 "$ROOT/bench/pushpin/ws_over_http_echo.py" $BACKEND_PORT 2>"$WORK/backend.log" &
    BE_PID=$!; PIDS+=("$BE_PID")
    taskset -c 0 pushpin --config "$WORK/pushpin/pushpin.conf" -m >"$WORK/pushpin.log" 2>&1 &
    PP_PID=$!; PIDS+=("$PP_PID")
    if wait_port $PUSHPIN_PORT && wait_port $BACKEND_PORT; then
        sleep 2
        # CPU time is summed over Pushpin's processes and the backend; RSS is
        # read from the connection manager, which holds the client sockets.
        CPU_PIDS="$PP_PID $(pgrep -P "$PP_PID" | tr '\n' ' ') $BE_PID"
        CONN_PID=$(pgrep -P "$PP_PID" -f condure || echo "$PP_PID")
        lg pp.e64 "$CONN_PID" $PUSHPIN_PORT --service echo echo --connections 64 --seconds "$RUN_S"
        lg pp.e1 "$CONN_PID" $PUSHPIN_PORT --service echo echo --connections 1 --seconds "$RUN_S"
        lg pp.churn "$CONN_PID" $PUSHPIN_PORT --service echo churn --seconds "$RUN_S"
        lg pp.idle "$CONN_PID" $PUSHPIN_PORT --service echo idle --connections "${PUSHPIN_IDLE_CONNECTIONS:-5000}"
        unset CPU_PIDS
    else
        PP=0
        tail -20 "$WORK/pushpin.log" >&2
    fi
fi

# --- table ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && a != "") printf "%.2f", a/b; else printf "-" }'; }
per_msg() { awk -v c="$1" -v n="$2" 'BEGIN{ if (n+0 > 0) printf "%.1f", c*1e6/n; else printf "-" }'; }
g() { echo "${R[$1]:-}"; }

echo
printf '%-34s %12s %12s %12s %9s %9s\n' measurement wasmgate native pushpin wg/native wg/pushpin
row() { printf '%-34s %12s %12s %12s %9s %9s\n' "$1" "$2" "$3" "$4" "$(ratio "$2" "$3")" "$(ratio "$2" "$4")"; }
for c in 1 64; do
    row "echo c=$c msgs/s" "$(g wg.e$c.msgs_per_s)" "$(g na.e$c.msgs_per_s)" "$(g pp.e$c.msgs_per_s)"
    row "echo c=$c p50 us" "$(g wg.e$c.p50_us)" "$(g na.e$c.p50_us)" "$(g pp.e$c.p50_us)"
    row "echo c=$c p99 us" "$(g wg.e$c.p99_us)" "$(g na.e$c.p99_us)" "$(g pp.e$c.p99_us)"
    row "echo c=$c p99.9 us" "$(g wg.e$c.p999_us)" "$(g na.e$c.p999_us)" "$(g pp.e$c.p999_us)"
    row "echo c=$c server CPU us/msg" "$(per_msg "$(g wg.e$c.cpu_s)" "$(g wg.e$c.total)")" \
        "$(per_msg "$(g na.e$c.cpu_s)" "$(g na.e$c.total)")" "$(per_msg "$(g pp.e$c.cpu_s)" "$(g pp.e$c.total)")"
    row "echo c=$c errors" "$(g wg.e$c.errors)" "$(g na.e$c.errors)" "$(g pp.e$c.errors)"
done
row "churn connect+close/s" "$(g wg.churn.conn_per_s)" "$(g na.churn.conn_per_s)" "$(g pp.churn.conn_per_s)"
row "idle connections held" "$(g wg.idle.connections)" "$(g na.idle.connections)" ""
row "idle connect/s" "$(g wg.idle.connect_per_s)" "$(g na.idle.connect_per_s)" ""
row "idle RSS KiB/connection" "$(g wg.idle.rss_per_conn_kib)" "$(g na.idle.rss_per_conn_kib)" "$(g pp.idle.rss_per_conn_kib)"
row "fanout $FANOUT_N: last received ms" "$(g wg.fanout.last_ms)" "" ""
row "fanout $FANOUT_N: p50 ms" "$(g wg.fanout.p50_ms)" "" ""
row "fanout errors" "$(g wg.fanout.errors)" "" ""
