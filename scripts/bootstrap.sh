#!/usr/bin/env bash
# Prepare a machine for mlip-autopipe, idempotently: Quantum ESPRESSO's pw.x (apt, when missing and
# possible), a virtual environment in .venv with the package and its test tools. Safe to run again; a
# second run installs nothing and takes about a second.
#
#   scripts/bootstrap.sh              pw.x and .venv (what scripts/demo.sh needs)
#   scripts/bootstrap.sh --tensorpot  also the nonlinear Pacemaker backend (TensorFlow, about 900 MB, in .venv)
#   scripts/bootstrap.sh --tests      everything the test suite runs: also headless Chromium (the status
#                                     report's test), SLURM and munge (the one-node cluster of the SLURM
#                                     tests) and the tensorpot backend. What cannot be installed here (no
#                                     root, no sudo) is named; pytest then skips those tests and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false tensorpot=false
for arg in "$@"; do
  case $arg in
    --tests) tests=true tensorpot=true ;;
    --tensorpot) tensorpot=true ;;
    *) echo "bootstrap: unknown option $arg (use --tests or --tensorpot)" >&2; exit 2 ;;
  esac
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

# Debian packages this machine lacks, each for the program that shows it is there: `packages` with their
# recommended ones (QE's pseudopotentials, Chromium's fonts), `bare` without (SLURM needs none of its).
packages=() bare=()
have pw.x || packages+=(quantum-espresso)
if $tests; then
  have chromium || packages+=(chromium)
  for program in slurmctld slurmd sinfo munged; do
    have "$program" || { bare+=(slurmctld slurmd slurm-client munge); break; }
  done
fi
pip_install() {  # pip_install ARG...: into .venv, its chatter in .venv/pip.log unless it fails
  .venv/bin/python -m pip install -q "$@" >.venv/pip.log 2>&1 || {
    tail -n 40 .venv/pip.log >&2; echo "bootstrap: pip install $* failed (.venv/pip.log)" >&2; exit 1; }
}
apt_install() {  # apt_install [apt-get options] PACKAGE...: as root, or through sudo
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >/dev/null
}

missing=("${packages[@]}" "${bare[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo)
  else
    as_root=(none)
  fi
  if [ "${as_root[*]-}" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing with ${as_root[*]:+sudo }apt-get: ${missing[*]} (about a minute)" >&2
    "${as_root[@]}" apt-get update -q >/dev/null
    [ ${#packages[@]} -eq 0 ] || apt_install "${packages[@]}"
    [ ${#bare[@]} -eq 0 ] || apt_install --no-install-recommends "${bare[@]}"
  elif ! have pw.x; then
    echo "bootstrap: pw.x (Quantum ESPRESSO) is not on PATH and cannot be installed here (not root, no sudo)." >&2
    echo "  Debian/Ubuntu: apt-get install quantum-espresso; HPC: module load quantum-espresso;" >&2
    echo "  conda: conda install -c conda-forge qe. Then run this command again." >&2
    exit 1
  else
    echo "bootstrap: cannot install ${missing[*]} here (not root, no sudo); the tests that need them" >&2
    echo "  are skipped, and pytest's last lines name them. As root: apt-get install ${missing[*]}" >&2
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
  pip_install --upgrade pip
  pip_install -e ".[dev]"
  touch "$stamp"
fi

# tensorpotential declares a CUDA TensorFlow, so it goes in without its dependencies; the `tensorpot`
# extra carries the CPU TensorFlow and the rest of what it imports (docs/training.md).
if $tensorpot && ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('tensorpotential') is None)"; then
  echo "bootstrap: installing TensorFlow and tensorpotential into .venv (nonlinear fits; about 900 MB)" >&2
  pip_install -e ".[dev,tensorpot]"
  pip_install --no-deps "tensorpotential==0.6.2.1"
fi
