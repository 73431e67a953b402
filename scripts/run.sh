#!/usr/bin/env bash
# run.sh [persona-mcp flags] - set up, build and start the server on
# 127.0.0.1:8000 with its data in ./data (SQLite file, built-in defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh release
exec ./build/persona-mcp --data-dir ./data "$@"
