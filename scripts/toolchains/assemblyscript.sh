#!/usr/bin/env bash
# AssemblyScript handlers (plugins/echo-as): the `assemblyscript` compiler
# from npm, installed into target/toolchains/assemblyscript (never globally).
# Build scripts run target/toolchains/assemblyscript/node_modules/.bin/asc.
# Needs Node.js and npm (Debian's `nodejs` and `npm` when missing). Does
# nothing when it is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="$root/target/toolchains/assemblyscript"
version=0.28.20

if [[ -x "$prefix/node_modules/.bin/asc" ]] && [[ "$("$prefix/node_modules/.bin/asc" --version 2>/dev/null)" == "Version $version" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "toolchains/assemblyscript: installing nodejs and npm"
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
echo "toolchains/assemblyscript: installing assemblyscript $version into $prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --silent "assemblyscript@$version"
