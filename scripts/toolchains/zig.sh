#!/usr/bin/env bash
# Zig handlers (plugins/echo-zig): the Zig compiler from the PyPI package
# `ziglang`, in a virtual environment at target/toolchains/zig. Build
# scripts run it as `target/toolchains/zig/bin/python -m ziglang`. Does
# nothing when it is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/toolchains/zig"
version=0.15.2

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -m ziglang version 2>/dev/null | grep -qx "$version"; then
    exit 0
fi
echo "toolchains/zig: installing ziglang $version into $venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ziglang==$version"
"$venv/bin/python" -m ziglang version
