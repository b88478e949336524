#!/usr/bin/env bash
# Optional: the TensorFlow backend of the nonlinear Pacemaker fit (training.mode: nonlinear), about 900 MB.
# tensorpotential declares a CUDA TensorFlow, so it goes in without its dependencies; the `tensorpot`
# extra carries the CPU TensorFlow and the rest of what it imports (docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
if ! .venv/bin/python -c "import tensorpotential" >/dev/null 2>&1; then
  echo "install-tensorpot: installing TensorFlow and tensorpotential into .venv" >&2
  .venv/bin/python -m pip install -q -e ".[dev,tensorpot]"
  .venv/bin/python -m pip install -q --no-deps "tensorpotential==0.6.2.1"
fi
