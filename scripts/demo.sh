#!/usr/bin/env bash
# The quickstart: fcc aluminium, real Quantum ESPRESSO labels, linear ACE fits, MD exploration, to DONE.
# Running it again resumes the same project (and does nothing once it is DONE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/mlip-auto run examples/quickstart/input.yaml --site local "$@"
