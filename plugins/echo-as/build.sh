#!/usr/bin/env bash
# Builds the AssemblyScript echo handler into the core module OUTPUT ($1).
# `--runtime stub` never frees (each event runs in a fresh instance) and
# `--use abort=...` replaces the `env.abort` import the gateway does not
# offer. Toolchain: scripts/toolchains/assemblyscript.sh (npm
# `assemblyscript` in target/toolchains/assemblyscript; run scripts/setup.sh).
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"
asc="$root/target/toolchains/assemblyscript/node_modules/.bin/asc"

if [[ ! -x "$asc" ]] || ! command -v node >/dev/null; then
    echo "echo-as: the AssemblyScript toolchain (npm assemblyscript in target/toolchains/assemblyscript, Node.js) is missing: run scripts/setup.sh" >&2
    exit 3
fi

"$asc" echo.ts --runtime stub -O3 --noAssert \
    --use abort=../../guest-sdk/assemblyscript/wasmgate/wasmgateAbort \
    -o "$output"
