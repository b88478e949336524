#!/usr/bin/env bash
# Optional: the TensorFlow backend of the nonlinear Pacemaker fit (training.mode: nonlinear), about 900 MB
# in .venv (docs/training.md). scripts/test.sh installs it too.
exec "$(dirname "$0")/bootstrap.sh" --tensorpot
