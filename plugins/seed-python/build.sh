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
# Keep Python's byte-code caches out of the source folders.
export PYTHONPYCACHEPREFIX="$root/target/toolchains/python/pycache"
"$componentize_py" -d "$root/wit" -w handler componentize \
    -p . -p "$root/guest-sdk/python" app -o "$output"
