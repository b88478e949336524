"""From the core's extxyz to Pacemaker's dataset: weights, force masks, reference energies, a fixed split.

Pacemaker reads a gzip pickle of a DataFrame with `ase_atoms`, `energy` (total, eV), `energy_corrected`
(energy minus the per-element reference, the quantity actually fitted), `forces` (nat x 3) and the weights
`w_energy` (per structure) and `w_forces` (per atom). A weight of 0 removes an energy or an atom's force
from the loss, which is how embedded cells carry their force mask and no energy.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from pyace.process_df import compute_shifted_scaled_corrected_energy

from .errors import TrainingFailure


def read_dataset(path: str | Path) -> pd.DataFrame:
    """One row per labelled frame of the extxyz file, with the raw weights from `energy_weight`/`force_mask`."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise TrainingFailure(
            f"The training dataset {path} is missing or empty: nothing to fit.", "empty_dataset"
        )
    frames = ase.io.read(path, index=":", format="extxyz")
    if not frames:
        raise TrainingFailure(
            f"The training dataset {path} holds no structures: nothing to fit.", "empty_dataset"
        )
    return pd.DataFrame([_row(atoms, path, i) for i, atoms in enumerate(frames)])


def _row(atoms: Atoms, path: Path, index: int) -> dict:
    where = f"{path} frame {index}"
    results = atoms.calc.results if atoms.calc is not None else {}
    if not {"energy", "forces"} <= results.keys() or "uuid" not in atoms.info:
        raise TrainingFailure(
            f"{where} has no energy/forces or no info['uuid']: every frame of the training set must be a "
            "labelled structure written by the core (SinglePointCalculator results and a uuid).",
            "invalid_dataset",
        )
    energy, forces = float(results["energy"]), np.array(results["forces"], dtype=float)
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        raise TrainingFailure(
            f"{where} has a non-finite energy or force; such a label must not be fitted.", "invalid_dataset"
        )
    mask = np.asarray(atoms.arrays.get("force_mask", np.ones(len(atoms))), dtype=float)
    plain = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return {
        "name": str(atoms.info["uuid"]),
        "config_type": str(atoms.info.get("config_type", "unknown")),
        "generation": int(atoms.info.get("generation", 0)),
        "source": str(atoms.info.get("source", "")),
        "ase_atoms": plain,
        "energy": energy,
        "forces": forces,
        "w_energy": float(atoms.info.get("energy_weight", 1.0)),
        "w_forces": mask,
    }


def validation_mask(
    names: pd.Series,
    fraction: float,
    seed: int,
    starting: Sequence[bool] | None = None,
    always_train: Sequence[bool] | None = None,
) -> np.ndarray:
    """True for structures in the validation set, decided per uuid so membership never changes as data grow.

    A structure's place depends only on sha256(seed:uuid), so a validation structure of generation 1 is
    still one in generation 9. `starting` marks generation 0, whose validation part is the fixed validation
    set: when the hashes leave it empty (with 0.1 and 8 starting structures, 43 % of seeds), the starting
    structure with the smallest hash is held out too. `always_train` marks structures that are never held
    out (`is_reference`: a generated slab, an alloy's pure end member), each the only one of its kind.
    If every structure lands in validation, the one with the largest hash trains.
    """
    scores = np.array([_unit_hash(f"{seed}:{name}") for name in names])
    keep = np.zeros(len(scores), dtype=bool) if always_train is None else np.asarray(always_train, dtype=bool)
    mask = (scores < fraction) & ~keep
    if starting is not None and fraction > 0:
        first = np.asarray(starting, dtype=bool) & ~keep
        if first.sum() >= 2 and not (mask & first).any():
            mask[np.flatnonzero(first)[np.argmin(scores[first])]] = True
    if len(mask) and mask.all():
        mask[np.argmax(scores)] = False
    return mask


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def check_elements(train: pd.DataFrame, validation: pd.DataFrame, elements: list[str]) -> None:
    """Refuse data with elements outside the run, and run elements the training structures never show."""

    def present(df: pd.DataFrame) -> set[str]:
        return set().union(*(set(atoms.get_chemical_symbols()) for atoms in df["ase_atoms"]))

    foreign = sorted((present(train) | present(validation)) - set(elements))
    if foreign:
        raise TrainingFailure(
            f"The training data contain {foreign}, which are not among the run's elements {elements}; "
            "the potential cannot describe them.",
            "unexpected_element",
        )
    missing = sorted(set(elements) - present(train))
    if missing:
        raise TrainingFailure(
            f"The run fits {elements} but no training structure contains {missing}: the potential would "
            "have no data for it. Add structures with that element (structures: section) or remove it.",
            "missing_element",
        )


def reference_energies(train: pd.DataFrame, elements: list[str], setting: str | dict[str, float]) -> dict:
    """Per-element energies subtracted from the total energy: the user's isolated atoms, or Pacemaker's auto.

    `auto` is pyace's least-squares fit of energy vs composition over the energy-weighted training
    structures, shifted so that the structure of largest volume per atom sits at zero.
    """
    if isinstance(setting, dict):
        missing = sorted(set(elements) - set(setting))
        if missing:
            raise TrainingFailure(
                f"training.reference_energy gives isolated-atom energies for {sorted(setting)} but not for "
                f"{missing}; give every element of the run or use 'auto'.",
                "missing_reference_energy",
            )
        return {"method": "isolated_atoms", "energies": {el: float(setting[el]) for el in elements}}
    weighted = train.loc[train["w_energy"] > 0, ["ase_atoms", "energy"]].reset_index(drop=True)
    fitted = compute_shifted_scaled_corrected_energy(weighted)
    shift = fitted.pop("shift")
    return {"method": "auto", "energies": {el: float(fitted.get(el, 0.0) - shift) for el in elements}}


def add_corrected_energy(df: pd.DataFrame, energies: dict[str, float]) -> None:
    """`energy_corrected` = total energy minus the sum of per-element reference energies."""
    df["energy_corrected"] = [
        energy - sum(energies[symbol] for symbol in atoms.get_chemical_symbols())
        for atoms, energy in zip(df["ase_atoms"], df["energy"])
    ]


def normalized_weights(df: pd.DataFrame) -> pd.DataFrame:
    """Weights scaled as Pacemaker does: energy weights and force weights each sum to 1 over the set."""
    out = df.copy()
    energy_total = out["w_energy"].sum()
    force_total = sum(w.sum() for w in out["w_forces"])
    if energy_total > 0:
        out["w_energy"] = out["w_energy"] / energy_total
    if force_total > 0:
        out["w_forces"] = [w / force_total for w in out["w_forces"]]
    return out


def check_fittable(train: pd.DataFrame, kappa: float) -> None:
    """A loss with zero total weight in a term that counts would be 0/0 in Pacemaker's normalisation."""
    if kappa < 1 and train["w_energy"].sum() <= 0:
        raise TrainingFailure(
            "No training structure has a non-zero energy_weight, so the energy part of the loss is empty; "
            "add bulk (non-embedded) structures or set training.kappa to 1 (forces only).",
            "empty_dataset",
        )
    if kappa > 0 and sum(w.sum() for w in train["w_forces"]) <= 0:
        raise TrainingFailure(
            "Every training atom has force_mask 0, so the force part of the loss is empty; "
            "set training.kappa to 0 (energies only) or add structures with usable forces.",
            "empty_dataset",
        )


def write_pickle(df: pd.DataFrame, path: Path) -> Path:
    """Pacemaker's dataset format: gzip pickle, protocol 4 (readable by older pandas/python)."""
    df.reset_index(drop=True).to_pickle(path, compression="gzip", protocol=4)
    return path
