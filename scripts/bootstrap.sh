#!/usr/bin/env bash
# Prepare a machine for mlip-autopipe, idempotently: Quantum ESPRESSO's pw.x (apt, when missing and
# possible), a virtual environment in .venv with the package and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pw.x >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Quantum ESPRESSO (pw.x) with apt-get" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q quantum-espresso >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    echo "bootstrap: installing Quantum ESPRESSO (pw.x) with sudo apt-get" >&2
    sudo apt-get update -q >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q quantum-espresso >/dev/null
  else
    echo "bootstrap: pw.x (Quantum ESPRESSO) is not on PATH and cannot be installed here." >&2
    echo "  Debian/Ubuntu: apt-get install quantum-espresso; HPC: module load quantum-espresso;" >&2
    echo "  conda: conda install -c conda-forge qe. Then run this command again." >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "bootstrap: Python 3.11 is needed (python-ace ships wheels for it); found $("$PYTHON" --version)." >&2
  echo "  Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || {
    echo "bootstrap: could not create .venv; on Debian: apt-get install python3-venv" >&2; exit 1; }
fi
stamp=.venv/.autopipe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing mlip-autopipe and its dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
