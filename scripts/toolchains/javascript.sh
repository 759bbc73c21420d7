#!/usr/bin/env bash
# Installs componentize-js (builds JavaScript handlers into components) into
# target/toolchains/node. Does nothing when the pinned version is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="0.23.0"
prefix="$root/target/toolchains/node"
package="$prefix/node_modules/@bytecodealliance/componentize-js/package.json"

if [ -f "$package" ] && grep -q "\"version\": \"$version\"" "$package"; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "toolchains/javascript: installing nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nodejs npm
fi

echo "toolchains/javascript: installing componentize-js $version into $prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --silent \
    "@bytecodealliance/componentize-js@$version"
