#!/usr/bin/env bash
# Builds app.py into a handler component: bash build.sh OUTPUT
set -euo pipefail
exec bash ../../guest-sdk/python/componentize.sh seed-python "$1"
