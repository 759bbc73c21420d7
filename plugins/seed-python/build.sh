#!/usr/bin/env bash
# Builds app.py into a handler component: bash build.sh OUTPUT
# Needs componentize-py from scripts/toolchains/python.sh.
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"
componentize_py="$root/target/toolchains/python/bin/componentize-py"
if [ ! -x "$componentize_py" ]; then
    echo "seed-python: the Python toolchain (componentize-py) is missing; run scripts/setup.sh" >&2
    exit 1
fi
# The handler and the helper module are copied into a folder under target/:
# componentize-py writes __pycache__/ beside the sources it reads.
build="$root/target/script-plugins/seed-python"
rm -rf "$build"
mkdir -p "$build" "$(dirname "$output")"
cp ./*.py "$root/guest-sdk/python/wasmgate.py" "$build/"
"$componentize_py" -d "$root/wit" -w handler componentize -p "$build" app -o "$output"
