#!/usr/bin/env bash
# Builds the Python handler in the current folder (app.py and any other .py
# files) into a component: componentize.sh SERVICE OUTPUT, called by a Python
# plugin's build.sh. Needs componentize-py from scripts/toolchains/python.sh.
set -euo pipefail
service="$1"
output="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
componentize_py="$root/target/toolchains/python/bin/componentize-py"
if [ ! -x "$componentize_py" ]; then
    echo "$service: the Python toolchain (componentize-py) is missing; run scripts/setup.sh" >&2
    exit 3
fi
# The handler and the helper module are copied into a folder under target/:
# componentize-py writes __pycache__/ beside the sources it reads.
build="$root/target/script-plugins/$service"
rm -rf "$build"
mkdir -p "$build" "$(dirname "$output")"
cp ./*.py "$root/guest-sdk/python/wasmgate.py" "$build/"
"$componentize_py" -d "$root/wit" -w handler componentize -p "$build" app -o "$output"
