#!/usr/bin/env bash
# Builds app.js into a handler component: bash build.sh OUTPUT
# Needs componentize-js from scripts/toolchains/javascript.sh. The gateway
# offers no wasi:http, so the HTTP and fetch-event features are left out.
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"
node_dir="$root/target/toolchains/node"
cli="$node_dir/node_modules/@bytecodealliance/componentize-js/src/cli.js"
if [ ! -f "$cli" ] || ! command -v node >/dev/null 2>&1; then
    echo "echo-js: the JavaScript toolchain (node, componentize-js) is missing; run scripts/setup.sh" >&2
    exit 3
fi
# The handler and the helper module are copied side by side into a folder
# under target/, so `import "./wasmgate.js"` resolves.
build="$root/target/script-plugins/echo-js"
mkdir -p "$build" "$(dirname "$output")"
cp app.js "$build/app.js"
cp "$root/guest-sdk/js/wasmgate.js" "$build/wasmgate.js"
node "$cli" "$build/app.js" --wit "$root/wit" --world-name handler \
    --disable http fetch-event -o "$output"
