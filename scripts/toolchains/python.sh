#!/usr/bin/env bash
# Installs componentize-py (builds Python handlers into components) into a
# virtual environment at target/toolchains/python. Does nothing when the pinned
# version is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="0.25.1"
venv="$root/target/toolchains/python"

if [ -x "$venv/bin/componentize-py" ] \
    && [ "$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" = "$version" ]; then
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "toolchains/python: installing python3 and python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y python3 python3-venv
fi

echo "toolchains/python: installing componentize-py $version into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
