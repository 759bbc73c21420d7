#!/usr/bin/env bash
# Cluster benchmark: three gateway nodes (--cluster) and one redis-server on
# this machine, plus one gateway outside the cluster (no Redis) as the
# baseline, every process sharing the machine's cores: read the ratios to
# the baseline rather than the absolutes. Prints:
#   - push latency p50/p99 and throughput, through the single gateway
#     (baseline), through the client's node and through another node, and
#     the Redis commands per push (host/examples/cluster_bench.rs);
#   - Redis commands per connection (connect + join), per broadcast, per close;
#   - a broadcast to MEMBERS (3,000) members, on the single gateway and
#     spread over the three nodes: time to the last member, and
#     delivered/expected (host/examples/fanout_bench.rs);
#   - each gateway's resident memory, idle and with the members connected;
#   - time from kill -9 of a node holding KILLED (300) connections to the
#     last of their node_lost cleanups on a survivor.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${MEMBERS:-3000}
KILLED=${KILLED:-300}
cargo xtask build-test-plugins >/dev/null
cargo build --release -q -p wasmgate --bin wasmgate --example fanout_bench --example cluster_bench
cargo build --release -q -p wasmgate-loadgen
work="$(mktemp -d)"
mkdir -p "$work/plugins/fan"
cp tests/plugins/probe/handler.wasm "$work/plugins/fan/"
echo "outbound_queue = 64" >"$work/plugins/fan/service.toml"
ulimit -n "$(ulimit -Hn)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
redis=$!
pids=()
publics=()
controls=()
single=""
held=""
cleanup() {
    for pid in "${pids[@]}" $single $held "$redis"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# The baseline: the same service on one gateway, no cluster, no Redis.
single_public=127.0.0.1:$(free_port)
single_control=127.0.0.1:$(free_port)
target/release/wasmgate serve --listen "$single_public" --control-listen "$single_control" \
    --plugins "$work/plugins" --memory-state --no-watch --cache-dir "$work/cache" \
    >"$work/single.log" 2>&1 &
single=$!
# The cluster: its key-value store is on the same Redis (the default).
for node in 0 1 2; do
    public=127.0.0.1:$(free_port)
    control=127.0.0.1:$(free_port)
    target/release/wasmgate serve --listen "$public" --control-listen "$control" \
        --plugins "$work/plugins" --no-watch --cache-dir "$work/cache" \
        --cluster "redis://127.0.0.1:$redis_port" >"$work/node$node.log" 2>&1 &
    pids+=($!)
    publics+=("$public")
    controls+=("$control")
done
for _ in $(seq 300); do
    curl -sf "http://$single_control/healthz" 2>/dev/null | grep -q '"loaded":true' && break
    sleep 0.1
done
for control in "${controls[@]}"; do
    for _ in $(seq 300); do
        health=$(curl -sf "http://$control/healthz" 2>/dev/null || true)
        case "$health" in *'"loaded":true'*'"lease":true'*'"subscribed":true'*) break ;; esac
        sleep 0.1
    done
done
rss() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
echo "idle RSS: single $(rss "$single") MiB; nodes $(rss "${pids[0]}") / $(rss "${pids[1]}") / $(rss "${pids[2]}") MiB"

echo "== pushes, connections, broadcasts (cluster_bench)"
target/release/examples/cluster_bench --redis "redis://127.0.0.1:$redis_port" \
    --single "$single_public,$single_control" \
    --node "${publics[0]},${controls[0]}" --node "${publics[1]},${controls[1]}" \
    --node "${publics[2]},${controls[2]}" --service fan

# Runs fanout_bench with "$@", prints its output, and prints the RSS of
# the gateways given in RSS_OF once its members are connected.
fanout() {
    target/release/examples/fanout_bench "$@" --service fan --members "$MEMBERS" \
        --rounds 10 >"$work/fanout.out" 2>&1 &
    local bench=$!
    for _ in $(seq 1200); do
        grep -q "^connected" "$work/fanout.out" && break
        kill -0 "$bench" 2>/dev/null || break
        sleep 0.1
    done
    local line="RSS with the members connected:"
    for pid in $RSS_OF; do line="$line $(rss "$pid") MiB"; done
    wait "$bench"
    cat "$work/fanout.out"
    echo "$line"
}
echo "== a broadcast to $MEMBERS members on the single gateway (fanout_bench)"
RSS_OF="$single" fanout --addr "$single_public" --control-addr "$single_control"
echo "== a broadcast to $MEMBERS members over three nodes (fanout_bench)"
RSS_OF="${pids[*]}" fanout --addr "${publics[0]},${publics[1]},${publics[2]}" \
    --control-addr "${controls[0]}"

echo "== kill -9 of a node holding $KILLED connections"
target/release/loadgen --addr "${publics[1]}" --service fan idle \
    --connections "$KILLED" --hold 120 >"$work/held.log" 2>&1 &
held=$!
node1=$(curl -sf "http://${controls[1]}/healthz" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["cluster"]["node"])')
for _ in $(seq 600); do
    listed=$(redis-cli -p "$redis_port" hlen "wasmgate:node:$node1:conns")
    [ "${listed:-0}" -ge "$KILLED" ] && break
    sleep 0.1
done
echo "registered on the node: $listed"
killed_at=$(date +%s.%N)
kill -9 "${pids[1]}"
for _ in $(seq 1500); do
    if grep -q "dead node reaped" "$work/node0.log" "$work/node2.log"; then break; fi
    sleep 0.02
done
reaped_at=$(date +%s.%N)
grep -h "dead node reaped" "$work/node0.log" "$work/node2.log" | sed 's/^/  /'
awk -v a="$killed_at" -v b="$reaped_at" 'BEGIN { printf "kill -9 to the last node_lost cleanup: %.1f s\n", b - a }'
