"""The MD check: NVT and NPT MD driven by the potential in a cell larger than the training cells.

The snapshots it keeps get fresh DFT forces later; the run itself tells whether MD with the potential is
stable (no collapse, no atoms flying apart) and which density the potential holds at temperature.
"""

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write

from autopipe.apps.explore.dynamics import make_dynamics
from autopipe.apps.explore.guards import explosion_reason
from autopipe.apps.explore.walker import load_calculator
from autopipe.apps.process import Interrupted, interrupted
from autopipe.apps.structures import atoms_from_dict

SNAPSHOTS_FILE = "snapshots.extxyz"
MIN_DISTANCE = 0.5  # Angstrom: a closer pair means the MD collapsed
MAX_HEATING = 3.0  # x the target temperature: hotter means the potential pumps energy in (spurious forces)
FRICTION = 0.01  # 1/fs, Langevin


def md_check(
    structure: dict[str, Any],
    potential: str,
    active_set: str,
    settings: dict[str, Any],
    temperature: float,
    seed: int,
    workdir: str,
) -> dict[str, Any]:
    """Run NVT, then NPT at 0 GPa, from `structure`; keep `snapshots` frames of each from its second half.

    Returns ``snapshots`` (extxyz path; frames named "md/nvt/i", "md/npt/i"), ``stable`` and ``reason``,
    ``npt_volume_per_atom`` (mean over the second half of NPT), ``max_gamma`` and ``max_temperature``.
    """
    directory = Path(workdir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    calc = load_calculator(potential, active_set)
    rng = np.random.default_rng(seed)
    snapshots: list[Atoms] = []
    summary: dict[str, Any] = {"stable": True, "reason": None, "max_gamma": 0.0, "max_temperature": 0.0}
    volumes: list[float] = []
    for ensemble, pressure in (("nvt", None), ("npt", 0.0)):
        atoms = atoms_from_dict(structure)
        atoms.calc = calc
        dynamics = make_dynamics(
            atoms,
            timestep_fs=settings["timestep_fs"],
            temperature=temperature,
            pressure_gpa=pressure,
            friction=FRICTION,
            rng=rng,
        )
        steps = settings["steps"]
        keep = np.linspace(steps // 2, steps, settings["snapshots"] + 1, dtype=int)[1:].tolist()
        for step in range(1, steps + 1):
            if interrupted():  # a Ctrl-C of a run whose tasks are threads of its own process
                raise Interrupted(f"the MD check stops at {ensemble.upper()} step {step}: the run is interrupted")
            dynamics.run(1)
            energy = atoms.get_potential_energy()
            reason = explosion_reason(atoms, energy, calc.cutoff, MIN_DISTANCE)
            if reason is None and atoms.get_temperature() > MAX_HEATING * temperature:
                reason = f"heated to {atoms.get_temperature():.0f} K (target {temperature:g} K)"
            if reason:
                summary.update(stable=False, reason=f"{ensemble.upper()} step {step}: {reason}")
                break
            summary["max_gamma"] = max(summary["max_gamma"], float(calc.results["gamma"].max()))
            summary["max_temperature"] = max(summary["max_temperature"], float(atoms.get_temperature()))
            if ensemble == "npt" and step > steps // 2:
                volumes.append(atoms.get_volume() / len(atoms))
            if step in keep:
                frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
                frame.info["assess"] = f"md/{ensemble}/{keep.index(step)}"
                snapshots.append(frame)
        if not summary["stable"]:
            break
    path = directory / SNAPSHOTS_FILE
    if snapshots:
        write(path, snapshots, format="extxyz")
    else:
        path.write_text("")
    return {
        **summary,
        "snapshots": str(path),
        "n_snapshots": len(snapshots),
        "npt_volume_per_atom": float(np.mean(volumes)) if volumes else None,
        "temperature": float(temperature),
    }
