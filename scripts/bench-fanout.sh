#!/usr/bin/env bash
# Fan-out benchmark: one broadcast to 10,000 connections, time until the last
# has it (and the same to a group of one as the baseline). The gateway runs on
# core 0, the load generator on core 1 (PIN=0: both unpinned, sharing both
# cores). Extra arguments go to the load generator (e.g. --members 1000
# --rounds 5).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo xtask build-test-plugins >/dev/null
cargo build --release -q -p wasmgate --bin wasmgate --example fanout_bench
work="$(mktemp -d)"
mkdir -p "$work/plugins/fan"
cp tests/plugins/probe/handler.wasm "$work/plugins/fan/"
echo "outbound_queue = 64" >"$work/plugins/fan/service.toml"
ulimit -n "$(ulimit -Hn)"
server_cpu=(taskset -c 0)
client_cpu=(taskset -c 1)
if [ "${PIN:-1}" = 0 ]; then
    server_cpu=()
    client_cpu=()
fi
port=$((20000 + RANDOM % 20000))
"${server_cpu[@]}" target/release/wasmgate serve --listen "127.0.0.1:$port" \
    --control-listen "127.0.0.1:$((port + 1))" --plugins "$work/plugins" \
    --memory-state --no-watch --cache-dir "$work/cache" >"$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((port + 1))/healthz" 2>/dev/null | grep -q '"loaded":true' && break
    sleep 0.1
done
"${client_cpu[@]}" target/release/examples/fanout_bench --addr "127.0.0.1:$port" \
    --control-addr "127.0.0.1:$((port + 1))" --service fan \
    --server-pid "$gateway" "$@"
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$gateway/status")
echo "gateway RSS with the members connected: $((rss_kib / 1024)) MiB"
