#!/usr/bin/env bash
# One command for the side-by-side performance measurement (BENCHMARKS.md,
# "Gateway vs. native vs. Pushpin"): builds release binaries and the echo
# handler, starts wasmgate, the native axum echo server and (if installable)
# Pushpin with a WebSocket-over-HTTP echo backend, each pinned to core 0 with
# the load generator on core 1, runs the load modes and prints a table.
# Then the fan-out benchmark (one `data broadcast` to FANOUT_CONNECTIONS
# members, host/examples/fanout_bench.rs) and the criterion benchmarks of the
# per-event path (scripts/bench-per-event.sh). wasmgate's echo is measured
# twice in the same run: the default (a fresh instance per event) and a
# service with `instance_reuse = 1000`; so is the HTTP trigger (GET of the
# `web` test handler's `/html` page, against the native server's axum route
# answering the same page). The fan-out runs against the native server too
# (its members join a group, a broadcast writes one queue per member).
# The tenant rows run gateways as users run them, watcher and compile cache
# on: echo through `echo` alone and beside the example services of plugins/
# plus TENANTS idle copies of `echo` (with that crowd's idle CPU and reads),
# then TENANTS services x TENANT_CONNECTIONS connections echoing at once
# against one service with as many connections.
# Everything listens on 127.0.0.1; total run time is about fifteen minutes.
#
# Knobs (environment): SECONDS_PER_RUN (5), IDLE_CONNECTIONS (19000),
# FANOUT_CONNECTIONS (10000), TENANTS (100), TENANT_CONNECTIONS (50),
# TENANT_ROUNDS (3),
# PUSHPIN=0 (skips the Pushpin baseline, which is on by default and
# installs the Debian package if `pushpin` is missing),
# PUSHPIN_IDLE_CONNECTIONS (5000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RUN_S=${SECONDS_PER_RUN:-5}
IDLE_N=${IDLE_CONNECTIONS:-19000}
FANOUT_N=${FANOUT_CONNECTIONS:-10000}
WG_PORT=18080 WG_CONTROL_PORT=18081 NATIVE_PORT=18090 PUSHPIN_PORT=18100 BACKEND_PORT=18110

ulimit -n "$(ulimit -Hn)"   # idle mode holds ~19,000 sockets on each side

echo "== building (release)" >&2
cargo build --release -p wasmgate -p wasmgate-loadgen >&2
cargo build --release -p wasmgate --example fanout_bench >&2
cargo bench -p wasmgate --bench per_event --no-run >&2
# The Rust echo handler and the test probe handler (whose register joins the
# group named in `?join=`), built directly so only this checkout is touched.
cargo build -p echo -p probe -p web --target wasm32-wasip2 --profile wasm >&2
# The example services of plugins/ (those whose toolchain is installed), for
# the tenant rows.
cargo xtask build-plugins --skip-missing-toolchains >&2
ECHO_WASM=$TARGET/wasm32-wasip2/wasm/echo.wasm
PROBE_WASM=$TARGET/wasm32-wasip2/wasm/probe.wasm
WEB_WASM=$TARGET/wasm32-wasip2/wasm/web.wasm
LOADGEN=$TARGET/release/loadgen

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The echo handler as two services (default fresh instances; instance
# reuse), and the probe handler for the fan-out.
mkdir -p "$WORK/plugins/echo" "$WORK/plugins/reuse" "$WORK/plugins/fan" "$WORK/plugins/web" "$WORK/plugins/webr"
cp "$WEB_WASM" "$WORK/plugins/web/handler.wasm"
cp "$WEB_WASM" "$WORK/plugins/webr/handler.wasm"
echo "instance_reuse = 1000" >"$WORK/plugins/webr/service.toml"
cp "$ECHO_WASM" "$WORK/plugins/echo/handler.wasm"
cp "$ECHO_WASM" "$WORK/plugins/reuse/handler.wasm"
echo "instance_reuse = 1000" >"$WORK/plugins/reuse/service.toml"
cp "$PROBE_WASM" "$WORK/plugins/fan/handler.wasm"
echo "outbound_queue = 64" >"$WORK/plugins/fan/service.toml"

# Waits until the gateway whose control listener is on port $1 has loaded
# every service it found at start-up (it listens before that).
wait_loaded() {
    for _ in $(seq 1 1200); do
        curl -fsS "http://127.0.0.1:$1/healthz" 2>/dev/null | grep -q '"loaded":true' && return 0
        sleep 0.1
    done
    return 1
}
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

# http_runs NAME PID PORT PATH: the HTTP trigger's GET, 1 and 64 connections.
http_runs() {
    local name=$1 pid=$2 port=$3 path=$4
    lg "$name.h1" "$pid" "$port" http --path "$path" --connections 1 --seconds "$RUN_S"
    lg "$name.h64" "$pid" "$port" http --path "$path" --connections 64 --seconds "$RUN_S"
}

# --- wasmgate -----------------------------------------------------------
echo "== wasmgate" >&2
taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$WG_PORT" --control-listen "127.0.0.1:$WG_CONTROL_PORT" --plugins "$WORK/plugins" \
    --no-cache --no-watch --memory-state >"$WORK/wasmgate.log" 2>&1 &
WG_PID=$!; PIDS+=("$WG_PID")
wait_port $WG_PORT
wait_loaded $WG_CONTROL_PORT
echo_runs wg "$WG_PID" $WG_PORT echo
echo_runs wgr "$WG_PID" $WG_PORT reuse
http_runs wg "$WG_PID" $WG_PORT /http/web/html
http_runs wgr "$WG_PID" $WG_PORT /http/webr/html
lg wg.churn "$WG_PID" $WG_PORT churn --seconds "$RUN_S"
sleep 1
lg wg.idle "$WG_PID" $WG_PORT idle --connections "$IDLE_N"
kill "$WG_PID"; wait "$WG_PID" 2>/dev/null || true

# Fan-out: a fresh gateway, FANOUT_N members of service `fan` in one group,
# 10 broadcasts by reverse push and 10 by host call, each timed until the
# last member has it (and the same to a group of one as the baseline).
echo "== wasmgate fan-out" >&2
taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$WG_PORT" --control-listen "127.0.0.1:$WG_CONTROL_PORT" --plugins "$WORK/plugins" \
    --no-cache --no-watch --memory-state >"$WORK/wasmgate-fanout.log" 2>&1 &
WG_PID=$!; PIDS+=("$WG_PID")
wait_port $WG_PORT
wait_loaded $WG_CONTROL_PORT
taskset -c 1 "$TARGET/release/examples/fanout_bench" --addr "127.0.0.1:$WG_PORT" --control-addr "127.0.0.1:$WG_CONTROL_PORT" --service fan \
    --server-pid "$WG_PID" --members "$FANOUT_N" --rounds 10 >"$WORK/fanout.txt" || true
cat "$WORK/fanout.txt" >&2
kill "$WG_PID"; wait "$WG_PID" 2>/dev/null || true

# --- tenants ----------------------------------------------------------------
# Tenant independence, as users run the gateway (watcher on, compile cache
# on): echo at 64 connections through `echo` served alone, then beside the
# example services of plugins/ and TENANTS idle copies of `echo`
# (tenant-1..N, each its own service), with the idle cost of that crowd (CPU
# and bytes read over 5 s with no client). Then, in the crowded gateway,
# many tenants at once: TENANTS services x TENANT_CONNECTIONS connections
# each, echoing, against one service with as many connections in all.
TENANTS=${TENANTS:-100}
TENANT_CONNECTIONS=${TENANT_CONNECTIONS:-50}
mkdir -p "$WORK/alone/echo"
cp "$ECHO_WASM" "$WORK/alone/echo/handler.wasm"
EXAMPLES=0
for dir in "$ROOT"/plugins/*/; do
    [ -f "$dir/handler.wasm" ] || continue
    name=$(basename "$dir")
    mkdir -p "$WORK/crowded/$name"
    cp "$dir"/*.wasm "$WORK/crowded/$name/"
    [ -f "$dir/service.toml" ] && cp "$dir/service.toml" "$WORK/crowded/$name/"
    EXAMPLES=$((EXAMPLES + 1))
done
mkdir -p "$WORK/crowded/echo"
cp "$ECHO_WASM" "$WORK/crowded/echo/handler.wasm"
for n in $(seq 1 "$TENANTS"); do
    mkdir -p "$WORK/crowded/tenant-$n"
    cp "$ECHO_WASM" "$WORK/crowded/tenant-$n/handler.wasm"
done
rchar() { awk '/^rchar/{print $2}' "/proc/$1/io"; }
# watched NAME PLUGINS: starts a gateway with the watcher on; sets WG_PID.
watched() {
    taskset -c 0 "$TARGET/release/wasmgate" serve --listen "127.0.0.1:$WG_PORT" --control-listen "127.0.0.1:$WG_CONTROL_PORT" --plugins "$2" \
        --cache-dir "$WORK/cache" --memory-state >"$WORK/wasmgate-$1.log" 2>&1 &
    WG_PID=$!; PIDS+=("$WG_PID")
    wait_port $WG_PORT
    wait_loaded $WG_CONTROL_PORT
    sleep 2
}
# Alone and crowded alternate, ROUNDS times each (one run of each moved by
# 10% between runs on this machine); the rows report the medians.
ROUNDS=${TENANT_ROUNDS:-3}
for round in $(seq 1 "$ROUNDS"); do
    echo "== wasmgate tenants, round $round: echo alone" >&2
    watched alone "$WORK/alone"
    lg "ta.r$round" "$WG_PID" $WG_PORT --service echo echo --connections 64 --seconds "$RUN_S"
    kill "$WG_PID"; wait "$WG_PID" 2>/dev/null || true
    echo "== wasmgate tenants, round $round: $EXAMPLES examples + $TENANTS idle copies of echo" >&2
    watched crowded "$WORK/crowded"
    if [ "$round" = 1 ]; then
        t0=$(cpu_ticks "$WG_PID"); r0=$(rchar "$WG_PID"); sleep 5
        t1=$(cpu_ticks "$WG_PID"); r1=$(rchar "$WG_PID")
        R[tc.idle_cpu_pct]=$(awk -v t=$((t1 - t0)) -v h="$CLK_TCK" 'BEGIN{printf "%.1f", 100*t/h/5}')
        R[tc.idle_read_kib_s]=$(awk -v b=$((r1 - r0)) 'BEGIN{printf "%.1f", b/1024/5}')
    fi
    lg "tc.r$round" "$WG_PID" $WG_PORT --service echo echo --connections 64 --seconds "$RUN_S"
    if [ "$round" = "$ROUNDS" ]; then
        ALL_CONNECTIONS=$((TENANTS * TENANT_CONNECTIONS))
        lg tc.many "$WG_PID" $WG_PORT --service tenant --tenants "$TENANTS" echo --connections "$ALL_CONNECTIONS" --seconds "$RUN_S"
        lg tc.one "$WG_PID" $WG_PORT --service echo echo --connections "$ALL_CONNECTIONS" --seconds "$RUN_S"
    fi
    kill "$WG_PID"; wait "$WG_PID" 2>/dev/null || true
done
# median PREFIX FIELD: the median over the rounds of R[PREFIX.r<n>.FIELD].
median() {
    for round in $(seq 1 "$ROUNDS"); do echo "${R[$1.r$round.$2]:-0}"; done | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'
}
for field in msgs_per_s p99_us; do
    R[ta.e64.$field]=$(median ta "$field")
    R[tc.e64.$field]=$(median tc "$field")
done

# --- native ---------------------------------------------------------------
echo "== native" >&2
taskset -c 0 "$TARGET/release/native-echo" --listen "127.0.0.1:$NATIVE_PORT" 2>"$WORK/native.log" &
NA_PID=$!; PIDS+=("$NA_PID")
wait_port $NATIVE_PORT
echo_runs na "$NA_PID" $NATIVE_PORT echo
http_runs na "$NA_PID" $NATIVE_PORT /http/web/html
lg na.churn "$NA_PID" $NATIVE_PORT churn --seconds "$RUN_S"
sleep 1
lg na.idle "$NA_PID" $NATIVE_PORT idle --connections "$IDLE_N"
kill "$NA_PID"; wait "$NA_PID" 2>/dev/null || true

# Native fan-out: the same fanout_bench against a fresh native server, whose
# members join a group by `?join=` and whose `broadcast:` message and
# `POST /push/fan` broadcast to it (no wasm, one writer task per member).
echo "== native fan-out" >&2
taskset -c 0 "$TARGET/release/native-echo" --listen "127.0.0.1:$NATIVE_PORT" 2>"$WORK/native-fanout.log" &
NA_PID=$!; PIDS+=("$NA_PID")
wait_port $NATIVE_PORT
taskset -c 1 "$TARGET/release/examples/fanout_bench" --addr "127.0.0.1:$NATIVE_PORT" --control-addr "127.0.0.1:$NATIVE_PORT" --service fan \
    --server-pid "$NA_PID" --members "$FANOUT_N" --rounds 10 >"$WORK/fanout-native.txt" || true
cat "$WORK/fanout-native.txt" >&2
kill "$NA_PID"; wait "$NA_PID" 2>/dev/null || true

# --- Pushpin ----------------------------------------------------------------
PP=0
if [ "${PUSHPIN:-1}" = 1 ]; then
    if ! command -v pushpin >/dev/null; then
        echo "== installing pushpin (Debian package, benchmark only)" >&2
        (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pushpin) >&2 || true
    fi
    if command -v pushpin >/dev/null; then PP=1; fi
fi
if [ $PP = 1 ]; then
    echo "== pushpin" >&2
    # A private configuration: own run and log folders, own ports, and one
    # route to the echo backend speaking WebSocket-over-HTTP.
    # - Pushpin reaches the backend through zurl. Debian's internal.conf points
    #   pushpin-proxy at a system-wide zurl daemon (ipc:///var/run/zurl/...)
    #   and leaves zurl out of the runner's services; with no such daemon the
    #   backend request is never sent and the upgrade ends in 502 after 60 s.
    #   So the runner starts a private zurl, bound in our rundir.
    # - The connection manager (condure) listens on 127.0.0.1 only, and
    #   port_offset moves the handler's TCP ports (5560-5563) to 18112-18115.
    # - log_level=1 (warnings): at 2, zurl logs two lines per message.
    PPL=/usr/lib/pushpin
    mkdir -p "$WORK/pushpin/run" "$WORK/pushpin/log"
    echo "* 127.0.0.1:$BACKEND_PORT,over_http" >"$WORK/pushpin/routes"
    sed -e 's|ipc:///var/run/zurl/zurl-|ipc://{rundir}/{ipc_prefix}zurl-|' \
        "$PPL/internal.conf" >"$WORK/pushpin/internal.conf"
    sed -e "s|^include=.*|include=$WORK/pushpin/internal.conf|" \
        -e "s|^rundir=.*|rundir=$WORK/pushpin/run|" \
        -e "s|^logdir=.*|logdir=$WORK/pushpin/log|" \
        -e "s|^port_offset=.*|port_offset=12552|" \
        -e '/^services=/{/zurl/!s/$/,zurl/}' \
        -e "s|^http_port=.*|http_port=127.0.0.1:$PUSHPIN_PORT|" \
        -e "s|^log_level=.*|log_level=1|" \
        -e "s|^routesfile=.*|routesfile=$WORK/pushpin/routes|" \
        /etc/pushpin/pushpin.conf >"$WORK/pushpin/pushpin.conf"
    taskset -c 0 python3 "$ROOT/bench/pushpin/ws_over_http_echo.py" $BACKEND_PORT 2>"$WORK/backend.log" &
    BE_PID=$!; PIDS+=("$BE_PID")
    taskset -c 0 pushpin --config "$WORK/pushpin/pushpin.conf" -m >"$WORK/pushpin.log" 2>&1 &
    PP_PID=$!; PIDS+=("$PP_PID")
    if wait_port $PUSHPIN_PORT && wait_port $BACKEND_PORT; then
        sleep 2
        # CPU time is summed over Pushpin's processes (condure, zurl, proxy,
        # handler, runner) and the backend; RSS is read from the connection
        # manager, which holds the client sockets.
        CPU_PIDS="$PP_PID $(pgrep -P "$PP_PID" | tr '\n' ' ') $BE_PID"
        CONN_PID=$(pgrep -P "$PP_PID" -x 'condure|pushpin-connmgr' | head -1 || true)
        CONN_PID=${CONN_PID:-$PP_PID}
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
    row "  instance reuse: msgs/s" "$(g wgr.e$c.msgs_per_s)" "$(g na.e$c.msgs_per_s)" "$(g pp.e$c.msgs_per_s)"
    row "echo c=$c p50 us" "$(g wg.e$c.p50_us)" "$(g na.e$c.p50_us)" "$(g pp.e$c.p50_us)"
    row "  instance reuse: p50 us" "$(g wgr.e$c.p50_us)" "$(g na.e$c.p50_us)" "$(g pp.e$c.p50_us)"
    row "echo c=$c p99 us" "$(g wg.e$c.p99_us)" "$(g na.e$c.p99_us)" "$(g pp.e$c.p99_us)"
    row "echo c=$c p99.9 us" "$(g wg.e$c.p999_us)" "$(g na.e$c.p999_us)" "$(g pp.e$c.p999_us)"
    row "echo c=$c server CPU us/msg" "$(per_msg "$(g wg.e$c.cpu_s)" "$(g wg.e$c.total)")" \
        "$(per_msg "$(g na.e$c.cpu_s)" "$(g na.e$c.total)")" "$(per_msg "$(g pp.e$c.cpu_s)" "$(g pp.e$c.total)")"
    row "  instance reuse: CPU us/msg" "$(per_msg "$(g wgr.e$c.cpu_s)" "$(g wgr.e$c.total)")" \
        "$(per_msg "$(g na.e$c.cpu_s)" "$(g na.e$c.total)")" "$(per_msg "$(g pp.e$c.cpu_s)" "$(g pp.e$c.total)")"
    row "echo c=$c errors (wg: fresh/reuse)" "$(g wg.e$c.errors)/$(g wgr.e$c.errors)" "$(g na.e$c.errors)" "$(g pp.e$c.errors)"
done
for c in 1 64; do
    row "http trigger c=$c req/s" "$(g wg.h$c.reqs_per_s)" "$(g na.h$c.reqs_per_s)" ""
    row "  instance reuse: req/s" "$(g wgr.h$c.reqs_per_s)" "$(g na.h$c.reqs_per_s)" ""
    row "http trigger c=$c p50 us" "$(g wg.h$c.p50_us)" "$(g na.h$c.p50_us)" ""
    row "http trigger c=$c p99 us" "$(g wg.h$c.p99_us)" "$(g na.h$c.p99_us)" ""
    row "http trigger c=$c errors (fresh/reuse)" "$(g wg.h$c.errors)/$(g wgr.h$c.errors)" "$(g na.h$c.errors)" ""
done
row "churn connect+close/s" "$(g wg.churn.conn_per_s)" "$(g na.churn.conn_per_s)" "$(g pp.churn.conn_per_s)"
row "idle connections held" "$(g wg.idle.connections)" "$(g na.idle.connections)" "$(g pp.idle.connections)"
row "idle connect/s" "$(g wg.idle.connect_per_s)" "$(g na.idle.connect_per_s)" "$(g pp.idle.connect_per_s)"
row "idle RSS KiB/connection" "$(g wg.idle.rss_per_conn_kib)" "$(g na.idle.rss_per_conn_kib)" "$(g pp.idle.rss_per_conn_kib)"
echo
echo
echo "fan-out (data broadcast; last member p50 over 10 rounds):"
grep -E "members via" "$WORK/fanout.txt" || echo "  (fan-out run failed; see above)"
echo "native (same broadcast, no wasm):"
grep -E "members via" "$WORK/fanout-native.txt" || echo "  (native fan-out run failed; see above)"
# last_p50 FILE VIA: the last member's p50 in ms of the FANOUT_N row.
last_p50() { awk -v n="$FANOUT_N" -v via="$2" '$1 == n && index($0, via) { for (i = 1; i < NF; i++) if ($i == "p50") { print $(i + 1); exit } }' "$1"; }
for via in "reverse push" "host call"; do
    row "fan-out $FANOUT_N via $via, last ms" "$(last_p50 "$WORK/fanout.txt" "$via")" "$(last_p50 "$WORK/fanout-native.txt" "$via")" ""
done

echo
echo "tenants (watcher on; echo through \`echo\`, 64 connections; medians of $ROUNDS alternating rounds):"
for round in $(seq 1 "$ROUNDS"); do
    echo "  round $round: alone $(g ta.r$round.msgs_per_s), crowded $(g tc.r$round.msgs_per_s) msgs/s"
done
printf '%-34s %12s %12s %9s\n' measurement alone crowded crowded/alone
printf '%-34s %12s %12s %9s\n' "echo c=64 msgs/s" "$(g ta.e64.msgs_per_s)" "$(g tc.e64.msgs_per_s)" "$(ratio "$(g tc.e64.msgs_per_s)" "$(g ta.e64.msgs_per_s)")"
printf '%-34s %12s %12s %9s\n' "echo c=64 p99 us" "$(g ta.e64.p99_us)" "$(g tc.e64.p99_us)" "$(ratio "$(g tc.e64.p99_us)" "$(g ta.e64.p99_us)")"
echo "  crowded: $EXAMPLES examples + $TENANTS idle copies of echo; idle $(g tc.idle_cpu_pct)% of a core, $(g tc.idle_read_kib_s) KiB/s read"
echo "many tenants (the crowded gateway, $ALL_CONNECTIONS connections echoing):"
printf '%-34s %12s %12s %9s\n' measurement "$TENANTS x $TENANT_CONNECTIONS" "1 x $ALL_CONNECTIONS" ratio
printf '%-34s %12s %12s %9s\n' "echo msgs/s" "$(g tc.many.msgs_per_s)" "$(g tc.one.msgs_per_s)" "$(ratio "$(g tc.many.msgs_per_s)" "$(g tc.one.msgs_per_s)")"
printf '%-34s %12s %12s %9s\n' "echo p99 us" "$(g tc.many.p99_us)" "$(g tc.one.p99_us)" ""
printf '%-34s %12s %12s %9s\n' "errors" "$(g tc.many.errors)" "$(g tc.one.errors)" ""

# --- per-event criterion benchmarks ------------------------------------------
echo
echo "per-event path, Rust echo handler (criterion, median of the estimate):"
taskset -c 0 "$ROOT/scripts/bench-per-event.sh" --warm-up-time 1 --measurement-time 3 2>/dev/null \
    | grep -E "time:" | sed -e 's/^per_event\//  /' || echo "  (criterion run failed)"
