"""Read a pw.x output and decide, independently of the exit code, whether it is a trustworthy label.

pw.x prints `JOB DONE.` after an unconverged SCF, exits 0 with `scf_must_converge=.false.`, and leaves half a
file when killed; so each way to fail is looked for explicitly and named (see FAILURE_KINDS). Numbers are read
with ASE's `espresso-out` reader only after the text passed every check.
"""

import io
import re
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read

from ..retry import AttemptFailed, Failure

FAILURE_KINDS = {
    "timeout": "pw.x ran longer than the time limit and was killed",
    "killed": "pw.x was killed by a signal (out of memory, scheduler, operator)",
    "scf_not_converged": "pw.x printed 'convergence NOT achieved'",
    "scf_accuracy_above_threshold": "the final SCF accuracy is above conv_thr (e.g. scf_must_converge=.false.)",
    "cholesky": "Error in routine ...: problems computing cholesky (subspace diagonalisation)",
    "s_matrix_not_positive_definite": "Error in routine ...: S matrix not positive definite",
    "too_many_bands_not_converged": "Error in routine c_bands: too many bands are not converged",
    "eigenvectors_not_converged": "Error in routine ...: eigenvectors failed to converge",
    "qe_error": "any other 'Error in routine' block",
    "truncated_output": "the output ends before 'JOB DONE.' (crash, full disk, lost node)",
    "nonzero_exit": "pw.x finished its output but exited with a non-zero code",
    "no_energy": "no final '!' total-energy line",
    "missing_forces": "no force for every atom",
    "missing_stress": "no stress tensor",
    "unparsable_output": "the output passed the checks but its numbers could not be read",
    "top_band_occupied": "the highest band is occupied: too few bands, the result is not trustworthy",
    "geometry_mismatch": "the species, cell or positions pw.x read back differ from the structure sent",
}
GEOMETRY_TOLERANCE = 1e-4  # Angstrom; pw.x prints positions and cell to 1e-7 alat

_ERROR_BLOCK = re.compile(
    r"%{20,}\s*\n\s*Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n(.*?)\n\s*%{20,}", re.DOTALL
)
_ERROR_PATTERNS = [
    ("cholesky", re.compile(r"cholesky", re.IGNORECASE)),
    ("s_matrix_not_positive_definite", re.compile(r"S matrix not positive definite", re.IGNORECASE)),
    ("too_many_bands_not_converged", re.compile(r"too many bands are not converged", re.IGNORECASE)),
    (
        "eigenvectors_not_converged",
        re.compile(r"eigenvectors (failed to converge|not converged)", re.IGNORECASE),
    ),
]
_ACCURACY = re.compile(r"estimated scf accuracy\s*<\s*([-+0-9.EeDd]+)\s*Ry")
_NBND = re.compile(r"number of Kohn-Sham states=\s*(\d+)")
_VERSION = re.compile(r"Program PWSCF v\.(\S+)")
_MAGNETIZATION = re.compile(r"total magnetization\s*=\s*([-+0-9.Ee]+)\s*Bohr mag/cell")
_FLOAT = re.compile(r"-?\d+\.\d+(?:[EeDd][-+]?\d+)?")


@dataclass
class RunInfo:
    """How the pw.x process ended."""

    returncode: int | None
    timed_out: bool = False
    timeout: float | None = None
    stderr: str = ""


def _float(text: str) -> float:
    return float(text.replace("D", "E").replace("d", "e"))


def code_version(text: str) -> str | None:
    match = _VERSION.search(text)
    return f"pw.x {match.group(1)}" if match else None


def facts(text: str) -> dict[str, Any]:
    """What can be read from any output, finished or not: SCF steps, last accuracy, bands, version."""
    accuracies = _ACCURACY.findall(text)
    nbnd = _NBND.search(text)
    return {
        "scf_steps": len(re.findall(r"^\s*iteration #\s*\d+", text, re.MULTILINE)),
        "scf_accuracy": _float(accuracies[-1]) if accuracies else None,
        "nbnd": int(nbnd.group(1)) if nbnd else None,
        "code_version": code_version(text),
        "restarted_from_density": "The initial density is read from file" in text,
    }


def top_band_occupation(text: str) -> float | None:
    """Largest occupation of the highest band over k-points and spins (needs verbosity='high')."""
    tail = text.rsplit("End of self-consistent calculation", 1)
    if len(tail) < 2:
        return None
    tops = []
    for block in re.split(r"occupation numbers", tail[1])[1:]:
        numbers = []
        for line in block.splitlines()[1:]:
            found = _FLOAT.findall(line)
            if not found:
                break
            numbers.extend(found)
        if numbers:
            tops.append(_float(numbers[-1]))
    return max(tops) if tops else None


def _fail(kind: str, message: str, text: str, **extra: Any) -> AttemptFailed:
    return AttemptFailed(Failure(kind, message, {**facts(text), **extra}))


def _error_block_failure(text: str) -> AttemptFailed | None:
    match = _ERROR_BLOCK.search(text)
    if match is None:
        return None
    routine, body = match.group(1), " ".join(match.group(2).split())
    kind = next((k for k, pattern in _ERROR_PATTERNS if pattern.search(body)), "qe_error")
    return _fail(kind, f"Error in routine {routine}: {body}", text, routine=routine)


def _killed(returncode: int | None) -> str | None:
    if returncode is None:
        return None
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def geometry_problem(read_back: Atoms, sent: Atoms) -> str | None:
    """What differs between the structure pw.x says it computed and the one it was given, or None.

    Positions are compared modulo the cell (pw.x may print an atom's periodic image), so only a real
    difference (another structure, an output that does not belong to this input) is reported.
    """
    if read_back.get_chemical_symbols() != sent.get_chemical_symbols():
        return (
            f"pw.x computed {read_back.get_chemical_formula()} ({len(read_back)} atoms) but was given "
            f"{sent.get_chemical_formula()} ({len(sent)} atoms)"
        )
    cell_error = float(np.abs(read_back.cell.array - sent.cell.array).max())
    if cell_error > GEOMETRY_TOLERANCE:
        return f"the cell pw.x computed differs from the one given by up to {cell_error:.3g} A"
    shift = sent.cell.scaled_positions(read_back.positions - sent.positions)
    shift -= np.round(shift)
    error = np.linalg.norm(sent.cell.cartesian_positions(shift), axis=1)
    if error.max() > GEOMETRY_TOLERANCE:
        return (
            f"atom {int(error.argmax())} is {error.max():.3g} A from where it was given "
            "(the output does not belong to this input)"
        )
    return None


def check_output(
    text: str,
    run: RunInfo,
    *,
    conv_thr: float,
    nat: int,
    sent: Atoms | None = None,
    top_band_limit: float = 0.01,
) -> dict[str, Any]:
    """Energy (eV), forces, stress and facts of a trustworthy output; else raise AttemptFailed naming why.

    With `sent` (the structure written to pw.in), the geometry pw.x read back must be that structure.
    """
    stderr_tail = " ".join(run.stderr.strip().splitlines()[-3:])
    if run.timed_out:
        raise _fail("timeout", f"pw.x did not finish within {run.timeout:g} s and was killed", text)
    if (error := _error_block_failure(text)) is not None:
        raise error
    if "convergence NOT achieved" in text:
        info = facts(text)
        raise _fail(
            "scf_not_converged",
            f"convergence NOT achieved after {info['scf_steps']} SCF iterations "
            f"(last estimated accuracy {info['scf_accuracy']} Ry, conv_thr {conv_thr:g} Ry)",
            text,
        )
    if (sig := _killed(run.returncode)) is not None:
        raise _fail(
            "killed", f"pw.x was killed by {sig} (exit code {run.returncode}). {stderr_tail}".strip(), text
        )
    if "JOB DONE." not in text:
        raise _fail(
            "truncated_output",
            f"the output ends before 'JOB DONE.' ({len(text)} characters, exit code "
            f"{run.returncode}). {stderr_tail}".strip(),
            text,
        )
    if run.returncode != 0:
        raise _fail("nonzero_exit", f"pw.x exited with code {run.returncode}. {stderr_tail}".strip(), text)
    if not re.search(r"^!\s+total energy\s*=", text, re.MULTILINE):
        raise _fail("no_energy", "no final '!    total energy' line: the SCF did not finish", text)
    info = facts(text)
    if info["scf_accuracy"] is None or info["scf_accuracy"] > conv_thr:
        raise _fail(
            "scf_accuracy_above_threshold",
            f"final estimated SCF accuracy {info['scf_accuracy']} Ry is "
            f"above conv_thr {conv_thr:g} Ry although pw.x reports convergence",
            text,
        )
    if "Forces acting on atoms" not in text:
        raise _fail("missing_forces", "the output has no 'Forces acting on atoms' block", text)
    if "total   stress" not in text:
        raise _fail("missing_stress", "the output has no 'total   stress' block", text)
    try:
        atoms = read(io.StringIO(text), format="espresso-out", index=-1)
        energy = float(atoms.get_potential_energy())
        forces = np.asarray(atoms.get_forces(), dtype=float)
        stress = np.asarray(atoms.get_stress(voigt=True), dtype=float)
    except Exception as exc:  # ASE raises many types on odd text; each means the same thing here
        raise _fail(
            "unparsable_output", f"ASE could not read the output ({type(exc).__name__}: {exc})", text
        ) from exc
    if sent is not None and (problem := geometry_problem(atoms, sent)) is not None:
        raise _fail("geometry_mismatch", problem, text)
    if forces.shape != (nat, 3):
        raise _fail("missing_forces", f"read forces of shape {forces.shape}, expected ({nat}, 3)", text)
    if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
        raise _fail("unparsable_output", "energy, forces or stress contain NaN or infinity", text)
    occupation = top_band_occupation(text)
    if occupation is not None and occupation > top_band_limit:
        raise _fail(
            "top_band_occupied",
            f"the highest band holds {occupation:.4f} electrons at some k-point "
            f"(limit {top_band_limit}): add bands",
            text,
            top_band_occupation=occupation,
        )
    magnetization = _MAGNETIZATION.findall(text)
    return {
        **info,
        "energy": energy,
        "forces": forces.tolist(),
        "stress": stress.tolist(),
        "magnetization": _float(magnetization[-1]) if magnetization else None,
    }
