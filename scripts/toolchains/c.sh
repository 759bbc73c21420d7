#!/usr/bin/env bash
# C handlers (plugins/echo-c): clang 14 with the wasm32 target, lld, the
# wasi-libc sysroot and compiler-rt builtins for wasm32, from Debian's packages.
# The component itself is assembled by `cargo run -p xtask --features
# componentize` (wit-component and the WASI preview-1 adapter), so nothing
# else is needed. Does nothing when all is installed.
set -euo pipefail

packages=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
echo "toolchains/c: installing ${missing[*]}"
sudo=()
if [[ $(id -u) != 0 ]]; then
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
