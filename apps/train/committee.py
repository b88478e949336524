"""Committee disagreement: a second uncertainty signal beside the extrapolation grade.

The trainer fits K linear models on bootstrap resamples of the training structures (`committee_size`);
where they disagree on a force, the data did not pin it down.
"""

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from pyace.asecalc import PyACEEnsembleCalculator


def committee_calculator(potentials: Sequence[str]) -> PyACEEnsembleCalculator:
    """One ASE calculator over the committee's potential files (load once, evaluate every MD step)."""
    return PyACEEnsembleCalculator([str(p) for p in potentials])


def committee_force_std(atoms: Atoms, committee: Sequence[str] | PyACEEnsembleCalculator) -> np.ndarray:
    """Per-atom force disagreement in eV/Angstrom: sqrt of the summed variances of the three components.

    `committee` is the result's `committee` list of YAML files, or a calculator made once from it by
    `committee_calculator` (cheaper inside an MD loop). Returns an array of shape (len(atoms),).
    """
    calc = committee if isinstance(committee, PyACEEnsembleCalculator) else committee_calculator(committee)
    forces_std = calc.get_property("forces_std", atoms.copy())
    return np.linalg.norm(forces_std, axis=1)
