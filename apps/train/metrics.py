"""Honest errors of a fitted potential: the saved file is evaluated with PyACECalculator on each structure.

Energies are compared per atom against `energy_corrected` (what was fitted) on structures whose energy
weight is non-zero; forces per Cartesian component on atoms whose force weight is non-zero, so embedded
cells count only where their labels mean something. Units: meV/atom and meV/Angstrom.

The validation set grows as labels are added (each new structure's place is fixed by its uuid hash), so
its RMSE mixes in each generation's newest, hardest structures. `fixed_validation`, the validation
structures of generation 0, is the same set for every generation's potential: the comparable curve.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from pyace import PyACECalculator


def structure_errors(potential: Path, df: pd.DataFrame) -> pd.DataFrame:
    """Per structure: config_type, generation, squared per-atom energy error (NaN if unweighted), summed
    squared force errors."""
    calc = PyACECalculator(str(potential))
    rows = []
    for atoms, energy, forces, w_energy, w_forces, config_type, generation in zip(
        df["ase_atoms"],
        df["energy_corrected"],
        df["forces"],
        df["w_energy"],
        df["w_forces"],
        df["config_type"],
        df["generation"],
    ):
        atoms = atoms.copy()
        atoms.calc = calc
        de = (atoms.get_potential_energy() - energy) / len(atoms)
        used = np.asarray(w_forces) > 0
        df_sq = (atoms.get_forces()[used] - np.asarray(forces)[used]) ** 2
        rows.append(
            {
                "config_type": config_type,
                "generation": generation,
                "de2": de**2 if w_energy > 0 else np.nan,
                "df2_sum": df_sq.sum(),
                "n_components": df_sq.size,
            }
        )
    return pd.DataFrame(rows, columns=["config_type", "generation", "de2", "df2_sum", "n_components"])


def summary(errors: pd.DataFrame) -> dict:
    """RMSEs of one set of structures; None where the set has no weighted energy or force."""
    n_energy = int(errors["de2"].notna().sum())
    n_components = int(errors["n_components"].sum())
    return {
        "energy_rmse_mev_atom": float(1e3 * np.sqrt(errors["de2"].mean())) if n_energy else None,
        "force_rmse_mev_a": float(1e3 * np.sqrt(errors["df2_sum"].sum() / n_components))
        if n_components
        else None,
        "n_structures": len(errors),
    }


def fit_metrics(potential: Path, train: pd.DataFrame, validation: pd.DataFrame) -> dict:
    """Train, validation and fixed-validation (generation 0's validation structures) RMSEs, and the same per
    `config_type` over train and validation together."""
    train_errors = structure_errors(potential, train)
    validation_errors = structure_errors(potential, validation)
    both = pd.concat([errors for errors in (train_errors, validation_errors) if len(errors)])
    return {
        "train": summary(train_errors),
        "validation": summary(validation_errors),
        "fixed_validation": summary(validation_errors[validation_errors["generation"] == 0]),
        "by_config_type": {str(ct): summary(group) for ct, group in both.groupby("config_type")},
    }
