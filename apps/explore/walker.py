"""One exploration walker: MD (Langevin NVT or MTK NPT) with the current ACE potential while watching its
extrapolation grade.

Every `check_interval` steps the per-atom grade gamma (pyace's D-optimality measure against the active
set) is read; frames at or above `gamma_select` become candidates for DFT, and a frame at or above
`gamma_halt` ends the walker, since the trajectory beyond it is no longer trustworthy.
"""

import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from pyace import PyACECalculator

from autopipe.apps.process import interrupted
from autopipe.apps.structures import atoms_from_dict
from autopipe.errors import ExplorationError

from .candidates import CANDIDATES_FILE, CandidatePool, candidate_frame, write_candidates, write_last_trusted
from .dynamics import make_dynamics
from .guards import explosion_reason
from .settings import ExplorationSettings

GAMMA_LOG = "gamma.csv"


def load_calculator(potential: str, active_set: str) -> PyACECalculator:
    """A PyACECalculator that reports per-atom gamma; setup problems become ExplorationError."""
    for label, path in (("potential", potential), ("active set", active_set)):
        if not Path(path).is_file():
            raise ExplorationError(
                f"The {label} file '{path}' does not exist. Exploration needs the Pacemaker potential "
                "(.yaml) of the last TRAIN step and its active set (.asi, written by pace_activeset)."
            )
    try:
        calc = PyACECalculator(str(potential))
        calc.set_active_set(str(active_set))
    except (ValueError, RuntimeError) as err:
        raise ExplorationError(
            f"Cannot load the ACE potential '{potential}' with active set '{active_set}': {err}. "
            "The potential must be a Pacemaker B-basis .yaml and the .asi must be computed for it."
        ) from err
    return calc


def evaluate_start(atoms: Atoms, potential: str) -> None:
    """Evaluate the starting frame so unsupported elements fail as a setup error, not mid-run."""
    try:
        atoms.get_potential_energy()
    except (ValueError, RuntimeError) as err:
        raise ExplorationError(
            f"The ACE potential '{potential}' cannot evaluate the starting structure "
            f"({atoms.get_chemical_formula()}): {err}"
        ) from err


def stop_requested(stop_file: str | None) -> bool:
    """Whether a walker is asked to end at this check: `stop_file` exists (how `mlip-auto md` stops its
    walker on Ctrl-C), or the run whose thread it runs in is being interrupted (`process.stop_all`)."""
    return interrupted() or (stop_file is not None and Path(stop_file).exists())


def run_walker(
    structure: dict[str, Any],
    potential: str,
    active_set: str,
    settings: dict[str, Any],
    temperature: float,
    seed: int,
    workdir: str,
    pressure: float | None = None,
    lammps_command: str | None = None,
    stop_file: str | None = None,
) -> dict[str, Any]:
    """Run one walker in `workdir` (NVT, or NPT at `pressure` GPa); return its status and its candidates.

    With ``engine: lammps`` the walker runs in LAMMPS instead (`LammpsRunner`; `lammps_command` is the
    site's), with the same files and result plus the path that ran.

    Writes ``candidates.extxyz`` (highest max gamma first, at most `max_frames_per_walker`),
    ``gamma.csv`` (one row per check) and ``last_trusted.extxyz``, the last checked frame below
    gamma_select (``last_trusted`` is its path, None when no checked frame was). ``status`` is "finished"
    (all steps ran), "halted" (gamma reached gamma_halt; that frame is a candidate), "exploded" (see
    `explosion_reason`; that frame is dropped) or "interrupted" (`stop_requested` at a check: the files
    hold what ran until then).
    """
    started = time.perf_counter()
    opts = ExplorationSettings.model_validate(settings)
    if opts.engine == "lammps":
        from .lammps import LammpsRunner  # imported here: that module builds on this one

        return LammpsRunner(potential, active_set, settings, lammps_command).run(
            structure, temperature, seed, workdir, pressure, stop_file
        )
    workdir_path = Path(workdir).resolve()
    workdir_path.mkdir(parents=True, exist_ok=True)

    calc = load_calculator(potential, active_set)
    atoms = atoms_from_dict(structure)
    atoms.calc = calc
    evaluate_start(atoms, potential)

    dynamics = make_dynamics(
        atoms, timestep_fs=opts.timestep_fs, temperature=temperature, pressure_gpa=pressure,
        friction=opts.friction, rng=np.random.default_rng(seed),
    )

    pool = CandidatePool(opts.max_frames_per_walker)
    status, reason, max_gamma, trusted = "finished", None, None, None
    with open(workdir_path / GAMMA_LOG, "w", buffering=1) as log:  # line by line, for `mlip-auto md`
        log.write("step,max_gamma,energy_per_atom,temperature_K,volume_per_atom\n")
        while True:
            step = dynamics.nsteps
            energy = atoms.get_potential_energy()
            reason = explosion_reason(atoms, energy, calc.cutoff, opts.min_distance)
            if reason:
                status = "exploded"
                break
            gamma = calc.results["gamma"]
            frame_gamma = float(gamma.max())
            max_gamma = frame_gamma if max_gamma is None else max(max_gamma, frame_gamma)
            log.write(
                f"{step},{frame_gamma:.6g},{energy / len(atoms):.6f},{atoms.get_temperature():.1f},"
                f"{atoms.get_volume() / len(atoms):.4f}\n"
            )
            frame = candidate_frame(atoms, gamma, step, temperature, seed)
            if frame_gamma >= opts.gamma_select:
                pool.add(frame)
            else:
                trusted = frame
            if frame_gamma >= opts.gamma_halt:
                status = "halted"
                break
            if step >= opts.steps:
                break
            if stop_requested(stop_file):
                status, reason = "interrupted", "asked to stop"
                break
            try:
                dynamics.run(min(opts.check_interval, opts.steps - step))
            except RuntimeError:
                if np.all(np.isfinite(atoms.positions)):
                    raise
                status, reason = "exploded", "non-finite positions"
                break

    candidates_path = workdir_path / CANDIDATES_FILE
    write_candidates(pool.frames, candidates_path)
    return {
        "status": status,
        "reason": reason,
        "steps_done": int(dynamics.nsteps),
        "max_gamma": max_gamma,
        "n_candidates": len(pool.frames),
        "candidates": str(candidates_path),
        "last_trusted": write_last_trusted(trusted, workdir_path),
        "wall_time": time.perf_counter() - started,
        "temperature": float(temperature),
        "pressure": pressure,
        "engine": "ase",
    }
