"""The alloy loops' final potentials away from their composition: what the pure end members buy.

`sample_efficiency.py --systems AlCu` trains on 50/50 cells only (plus, by default, one pure cell of each
element, `structures.generator.end_members`). Its held-out set is 50/50 too, so it cannot see whether the
fit split the elements' energies correctly. This scores each seed's final potential on what depends on it:
EMT MD frames at 25 % and 75 % Cu (900 K, 32- and 108-atom cells), and the mixing energy of the ideal
50/50 random alloy against pure fcc Al and Cu at their own EMT lattice constants.

    .venv/bin/python benchmarks/alloy_compositions.py RESULTS.json [RESULTS.json ...]

Each RESULTS.json is a `results_<method>.json` of sample_efficiency.py whose projects are still on disk.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from pyace import PyACECalculator
from sample_efficiency import FULL, SYSTEMS, emt_a0, emt_md, evaluate, ideal_cell

ALLOY = SYSTEMS["AlCu"]


def off_composition_frames(a0: float) -> list[Atoms]:
    """900 K EMT MD frames at 25 % and 75 % Cu on the 50/50 alloy's lattice constant."""
    rng = np.random.default_rng(11)
    frames = []
    for swap in (0.25, 0.75):
        system = replace(ALLOY, swap=swap)
        for repeats in (2, 3):
            frames += emt_md(ideal_cell(system, a0, repeats, rng), 900, None, 150, [100, 125, 150],
                             int(rng.integers(2**31)), category=f"{swap:.0%} Cu")
    return frames


def relaxed_fcc(element: str) -> Atoms:
    """The conventional fcc cell of `element` at EMT's own lattice constant, repeated to 32 atoms."""
    atoms = bulk(element, "fcc", cubic=True)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4)
    atoms.calc = None
    return atoms.repeat(2)


def mixing_energies(calc: Calculator, pure: dict[str, Atoms], alloys: list[Atoms],
                    reference: dict[str, float] | None = None) -> np.ndarray:
    """E(alloy) - (E(Al) + E(Cu)) / 2 per atom, meV/atom, for each alloy cell; `reference` added back."""

    def per_atom(atoms: Atoms) -> float:
        atoms = atoms.copy()
        atoms.calc = calc
        shift = sum(reference[s] for s in atoms.get_chemical_symbols()) if reference else 0.0
        return (atoms.get_potential_energy() + shift) / len(atoms)

    ends = np.mean([per_atom(cell) for cell in pure.values()])
    return np.array([per_atom(cell) - ends for cell in alloys]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    a0 = emt_a0(ALLOY, FULL)
    frames = off_composition_frames(a0)
    pure = {element: relaxed_fcc(element) for element in ALLOY.elements}
    alloys = [ideal_cell(ALLOY, a0, 2, np.random.default_rng(k)) for k in range(3)]
    truth = mixing_energies(EMT(), pure, alloys)
    eos_cell = ideal_cell(ALLOY, a0, FULL.supercell, np.random.default_rng(0))
    print(f"EMT mixing energy of three random 32-atom 50/50 cells: {', '.join(f'{e:.1f}' for e in truth)} meV/atom")
    print("\n| results | seed | labels | 25 % Cu F / E | 75 % Cu F / E | mixing energy error (meV/atom) |")
    print("|---|---|---|---|---|---|")
    for path in args.results:
        for case in json.loads(path.read_text())["cases"]:
            if case["system"] != ALLOY.name:
                continue
            final = case["loop"][-1]
            scores = evaluate(Path(final["potential"]), final["reference"], frames, eos_cell)["by_category"]
            error = mixing_energies(PyACECalculator(final["potential"]), pure, alloys, final["reference"]) - truth
            cells = [f"{scores[c]['force_rmse_mev_a']:.1f} / {scores[c]['energy_rmse_mev_atom']:.1f}"
                     for c in ("25% Cu", "75% Cu")]
            print(f"| {path.parent.name} | {case['seed']} | {final['labels']} | {' | '.join(cells)} | "
                  f"{error.mean():+.1f} |", flush=True)


if __name__ == "__main__":
    main()
