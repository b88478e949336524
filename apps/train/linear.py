"""Linear ACE fits with pyace.linearacefit: Pacemaker's loss solved as one weighted ridge regression.

LinearACEFit's design matrix has one row per structure (energy per atom) and three per atom (forces).
Weighting those rows by (1 - kappa) * w_energy and kappa * w_forces and using L2 as the ridge alpha gives
Pacemaker's loss without L1, so a zero weight removes a row: masked atoms cannot move the fit. Only the
basis-function coefficients are fitted (`basis_coeffs`); the radial coefficients keep their initial values,
which Pacemaker's nonlinear fit would optimise too.
"""

import os

import numpy as np
import pandas as pd
import psutil
from pyace import BBasisConfiguration, aseatoms_to_atomicenvironment
from pyace.atomicenvironment import calculate_minimal_nn_distance_per_bond
from pyace.generalfit import setup_zbl_inner_core_repulsion
from pyace.linearacefit import LinearACEDataset, LinearACEFit
from pyace.utils.utils import complement_min_dist_dict
from sklearn.linear_model import Ridge

from .errors import TrainingFailure

DESIGN_MATRIX_WORKERS = min(4, os.cpu_count() or 1)
CORE_MARGIN = 0.5  # Angstrom between the shortest distance in the data and the start of the ZBL core
CORE_WIDTH = 0.5  # Angstrom below the core's start over which the energy switches from ACE to ZBL
MIN_CORE = 0.5  # Angstrom: the core never starts closer than this


def design_dataset(basis: BBasisConfiguration, train: pd.DataFrame) -> LinearACEDataset:
    """The training set's design matrix for `basis`, refused up front if it cannot fit in memory."""
    dataset = LinearACEDataset(
        basis, train[["ase_atoms", "energy_corrected", "forces"]].reset_index(drop=True)
    )
    needed, available = dataset.estimate_memory(), psutil.virtual_memory().available
    if needed > 0.8 * available:
        raise TrainingFailure(
            f"The linear design matrix needs {needed / 2**30:.1f} GiB but {available / 2**30:.1f} GiB are free. "
            "Use fewer functions_per_element, or mode: nonlinear with a smaller batch_size.",
            "out_of_memory",
        )
    try:
        dataset.get_design_matrix(max_workers=DESIGN_MATRIX_WORKERS)
    except MemoryError as err:
        raise TrainingFailure(
            f"Out of memory while building the linear design matrix: {err}", "out_of_memory"
        ) from err
    return dataset


def row_weights(train: pd.DataFrame, kappa: float, multiplicity: np.ndarray | None = None) -> np.ndarray:
    """Sample weights of the design-matrix rows; `multiplicity` repeats structures (bootstrap resamples)."""
    counts = np.ones(len(train)) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    energy_rows = (1.0 - kappa) * train["w_energy"].to_numpy() * counts
    force_rows = [kappa * np.repeat(w, 3) * c for w, c in zip(train["w_forces"], counts)]
    return np.concatenate([energy_rows, *force_rows])


def ridge_fit(dataset: LinearACEDataset, weights: np.ndarray, alpha: float) -> BBasisConfiguration:
    """Solve the weighted ridge problem and return the basis with the fitted coefficients."""
    fit = LinearACEFit(model=Ridge(alpha=alpha, fit_intercept=False), train_dataset=dataset)
    fit.fit(sample_weight=weights)
    if not np.all(np.isfinite(fit.model.coef_)):
        raise TrainingFailure(
            "The linear fit produced non-finite coefficients (NaN loss); check the labels for NaN or huge "
            "forces, or raise training.l2_coeff.",
            "nan_loss",
        )
    return fit.get_bbasis().to_BBasisConfiguration()


def bootstrap_multiplicities(n_structures: int, size: int, seed: int) -> list[np.ndarray]:
    """How often each structure appears in each of `size` bootstrap resamples (seeded, reproducible)."""
    rng = np.random.default_rng(seed)
    return [rng.multinomial(n_structures, np.full(n_structures, 1.0 / n_structures)) for _ in range(size)]


def add_core_repulsion(conf: BBasisConfiguration, train: pd.DataFrame, elements: list[str]) -> None:
    """A ZBL core `CORE_MARGIN` below the shortest distance of each bond in the data.

    Without a core the fitted expansion is unconstrained where the data have no pairs, and MD can collapse.
    Pacemaker's `repulsion: auto` starts the core at the shortest distance itself; added after a linear fit,
    that switches the fitted ACE energy to ZBL exactly where thermal MD still goes (a little closer than
    the data), and the switch gives forces of eV/A. Below the margin, MD rarely reaches at the temperatures
    explored; between the core and the data, the extrapolation grade flags the frames. The switch is
    `CORE_WIDTH` wide, not pyace's 0.1 A: a 1200 K frame from a start of cold cells reached 0.51 A below
    the data, inside a 0.1 A switch, and its forces were 3 eV/A off (benchmarks/first_potential.py).
    """
    index = {el: i for i, el in enumerate(sorted(elements))}
    cutoff = max(block.rcutij for block in conf.funcspecs_blocks)
    envs = pd.DataFrame(
        {
            "atomic_env": [
                aseatoms_to_atomicenvironment(a, cutoff=cutoff, elements_mapper_dict=index)
                for a in train["ase_atoms"]
            ]
        }
    )
    shortest = {bond: max(r - CORE_MARGIN, MIN_CORE) for bond, r in calculate_minimal_nn_distance_per_bond(envs).items()}
    setup_zbl_inner_core_repulsion(
        conf, complement_min_dist_dict(shortest, shortest, sorted(elements), verbose=False), dr_in=CORE_WIDTH
    )
