"""One pw.x attempt in its own directory: write the input with ASE, run it with a time limit, check it.

The process runs in its own session so a timeout kills the whole group (launcher, MPI ranks, pw.x); the
input, stdout (`pw.out`), stderr (`pw.err`) and pw.x's CRASH file stay in `attempt_N/`. A retry starts
from the charge density the attempt before it left (`startingpot = 'file'`, as aiida-quantumespresso's
restarts do) when there is one; the scratch `outdir` is removed once the label is decided
(`remove_scratch`), to keep thousands of labels small.
"""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.io import write

from ..process import start, stop_group
from .pwout import RunInfo, check_output

INPUT, OUTPUT, STDERR, SCRATCH = "pw.in", "pw.out", "pw.err", "scratch"
SAVE = "pwscf.save"  # outdir/<prefix>.save: the charge density a restart reads
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the process group


def input_data(params: dict[str, Any], attempt_dir: Path) -> dict[str, dict[str, Any]]:
    """pw.x namelists for `params` (the flat dict from choose_qe_parameters, possibly changed by handlers)."""
    system = {
        key: params[key] for key in ("ecutwfc", "ecutrho", "occupations", "smearing", "degauss", "nspin")
    }
    if params.get("nbnd"):
        system["nbnd"] = params["nbnd"]
    namelists = {
        "control": {
            "calculation": "scf",
            "tprnfor": True,
            "tstress": True,
            "verbosity": "high",
            "disk_io": "none",
            "prefix": "pwscf",
            "outdir": str(attempt_dir / SCRATCH),
            "pseudo_dir": str(params["pseudo_dir"]),
        },
        "system": system,
        "electrons": {
            key: params[key] for key in ("conv_thr", "mixing_beta", "electron_maxstep", "diagonalization")
        },
    }
    if params.get("startingpot"):
        namelists["electrons"]["startingpot"] = params["startingpot"]
    for section, entries in params.get("pw_input", {}).items():
        namelists[section].update(entries)
    return namelists


def write_input(atoms: Atoms, params: dict[str, Any], attempt_dir: Path) -> Path:
    """Write `pw.in`; starting magnetisations travel as ASE initial magnetic moments (fractions)."""
    atoms = atoms.copy()
    moments = params.get("starting_magnetization") or {}
    atoms.set_initial_magnetic_moments(
        [moments.get(s, 0.0) for s in atoms.get_chemical_symbols()] if params["nspin"] == 2 else None
    )
    kpts = None if params["kpts"] == [1, 1, 1] else tuple(params["kpts"])  # None: pw.x Gamma-point tricks
    path = attempt_dir / INPUT
    write(
        path,
        atoms,
        format="espresso-in",
        input_data=input_data(params, attempt_dir),
        pseudopotentials=params["pseudopotentials"],
        kpts=kpts,
        koffset=tuple(params["koffset"]),
    )
    return path


def run_pw(argv: list[str], attempt_dir: Path, timeout: float, omp_num_threads: int) -> RunInfo:
    """Run `argv -in pw.in` in `attempt_dir` with stdout/stderr in files; never raises on a bad run."""
    env = {**os.environ, "OMP_NUM_THREADS": str(omp_num_threads)}
    with open(attempt_dir / OUTPUT, "wb") as out, open(attempt_dir / STDERR, "wb") as err:
        process = start([*argv, "-in", INPUT], attempt_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop_group(process, KILL_GRACE)
            returncode, timed_out = process.returncode, True
    stderr = (attempt_dir / STDERR).read_text(errors="replace")
    return RunInfo(returncode=returncode, timed_out=timed_out, timeout=timeout, stderr=stderr)


def run_attempt(
    params: dict[str, Any], atoms: Atoms, argv: list[str], workdir: Path, *, attempt: int
) -> dict[str, Any]:
    """One checked pw.x run in `workdir/attempt_N`: the parsed label, or AttemptFailed naming the failure."""
    attempt_dir = workdir / f"attempt_{attempt}"
    if attempt_dir.exists():
        shutil.rmtree(attempt_dir)
    attempt_dir.mkdir(parents=True)
    previous = workdir / f"attempt_{attempt - 1}" / SCRATCH
    restart = _finished(previous.parent) and any((previous / SAVE).glob("charge-density.*"))
    if restart:
        shutil.copytree(previous / SAVE, attempt_dir / SCRATCH / SAVE)
    shutil.rmtree(previous, ignore_errors=True)
    write_input(atoms, {**params, "startingpot": "file" if restart else None}, attempt_dir)
    run = run_pw(argv, attempt_dir, params["timeout"], params["omp_num_threads"])
    text = (attempt_dir / OUTPUT).read_text(errors="replace")
    return check_output(text, run, conv_thr=params["conv_thr"], nat=len(atoms), sent=atoms)


def _finished(attempt_dir: Path) -> bool:
    """Whether pw.x ended that attempt itself (a killed run may have left half a charge density)."""
    output = attempt_dir / OUTPUT
    return output.is_file() and "JOB DONE." in output.read_text(errors="replace")


def remove_scratch(workdir: Path) -> None:
    """Delete every attempt's scratch directory once the label is decided (ok or failed)."""
    for scratch in workdir.glob(f"attempt_*/{SCRATCH}"):
        shutil.rmtree(scratch, ignore_errors=True)
