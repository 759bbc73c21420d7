#!/usr/bin/env bash
# Installs what building and testing wasmgate needs beyond the Rust toolchain:
# the wasm32-wasip2 target, Prometheus (its server and promtool, for the
# metrics tests), redis-server (for the cluster tests), then every handler language's toolchain through
# the scripts in scripts/toolchains/ (each installs into target/toolchains/ or
# from the system's package manager, and does nothing when all is there).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

# The metrics tests check /metrics with promtool and scrape the gateway
# with a real Prometheus server: Debian's package has both.
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; then
    echo "setup: installing prometheus (server and promtool)"
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus
fi

# The cluster tests (host/tests/cluster.rs) start their own redis-server
# (Redis 7 on Debian 12) on a free port; the package's service is not used.
if ! command -v redis-server >/dev/null; then
    echo "setup: installing redis-server"
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server
fi

shopt -s nullglob
for toolchain in scripts/toolchains/*.sh; do
    bash "$toolchain"
done
