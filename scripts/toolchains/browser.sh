#!/usr/bin/env bash
# The browser test of the chat demo: Debian's Chromium, driven by the npm
# package playwright-core (installed into target/toolchains/browser).
# Does nothing when both are there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/target/toolchains/browser"
playwright_version="1.64.1"

if [ ! -x /usr/bin/chromium ]; then
    echo "setup: installing chromium (Debian package) for the browser test"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f "$dir/node_modules/playwright-core/package.json" ] ||
    ! grep -q "\"version\": \"$playwright_version\"" "$dir/node_modules/playwright-core/package.json"; then
    echo "setup: installing playwright-core $playwright_version into $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
        "playwright-core@$playwright_version"
fi
