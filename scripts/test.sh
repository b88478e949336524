#!/usr/bin/env bash
# The whole test suite, real pw.x, pyace and Parsl included. Fast tests only: scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
