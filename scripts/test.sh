#!/usr/bin/env bash
# The whole test suite: real pw.x, pyace, Parsl, SLURM and Chromium. Fast tests only: scripts/test.sh -m "not slow"
# First installs what the suite needs (scripts/bootstrap.sh --tests: apt packages as root or with sudo,
# the tensorpot backend in .venv); a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --tests
exec .venv/bin/python -m pytest "$@"
