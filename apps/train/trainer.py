"""The TRAIN stage: one generation's ACE potential from the labelled structures, with its active set.

Files in the task directory, in the order they are written:
    train.pkl.gzip, validation.pkl.gzip   Pacemaker datasets (fixed, seeded split by structure uuid)
    input.yaml                             the rendered Pacemaker input (the basis, in both modes)
    potential.yaml                         the fitted potential (+ pacemaker's own files in nonlinear mode)
    potential.yace                         the same for LAMMPS (pace_yaml2yace)
    potential.asi                          active set for the extrapolation grade (pace_activeset)
    committee/member_NN.yaml               bootstrap linear models, when committee_size >= 2
    <program>.log                          stdout and stderr of every program run
"""

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyace import BBasisConfiguration
from pyace.linearacefit import LinearACEDataset
from pydantic import ValidationError

from ..structures.sources import is_reference
from . import dataset as ds
from .errors import TrainingFailure
from .linear import add_core_repulsion, bootstrap_multiplicities, design_dataset, ridge_fit, row_weights
from .metrics import fit_metrics
from .nonlinear import resolve_backend, run_pacemaker, warm_start
from .pacemaker_input import basis_from_input, render_input
from .settings import TrainingSettings
from .tools import executable, run_tool

UNDER_DETERMINED = "Insufficient atomic environments"  # pyace's compute_active_set: fewer atoms than functions

LINEAR_BACKEND = "pyace.linearacefit"


class PacemakerTrainer:
    """Fits Pacemaker ACE potentials for a fixed set of elements, one generation per `fit` call.

    >>> trainer = PacemakerTrainer(TrainingSettings(accuracy="fast"), ["Al"], "gen_001/train")  # doctest: +SKIP
    >>> trainer.fit("gen_001/dataset.extxyz")["metrics"]["validation"]  # doctest: +SKIP
    {'energy_rmse_mev_atom': 1.9, 'force_rmse_mev_a': 21.4, 'n_structures': 4}
    """

    def __init__(self, settings: TrainingSettings, elements: list[str], workdir: str | Path) -> None:
        self.settings = settings
        self.elements = sorted(elements)
        self.workdir = Path(workdir).resolve()

    def fit(self, dataset: str | Path, initial_potential: str | None = None) -> dict[str, Any]:
        """Fit, convert, build the active set and measure; returns the JSON-able result (see `fit`)."""
        start = time.monotonic()
        deadline = start + self.settings.timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        train, validation, reference = self._prepare_data(dataset)
        files = self._write_datasets(train, validation)
        backend = LINEAR_BACKEND if self.settings.mode == "linear" else resolve_backend(self.settings.backend)
        pacemaker_test_file = (
            files["validation"] if files["validation"] and _has_weights(validation) else None
        )
        input_text = render_input(
            self.settings,
            self.elements,
            train_file=str(files["train"]),
            validation_file=str(pacemaker_test_file) if pacemaker_test_file else None,
            backend="pyace" if backend == LINEAR_BACKEND else backend,
        )
        (self.workdir / "input.yaml").write_text(input_text)
        target = basis_from_input(input_text)
        potential = self.workdir / "potential.yaml"

        design = None
        warm, warm_reason = False, "linear mode always fits from scratch (a linear fit is exact in one step)"
        if self.settings.mode == "linear":
            design = design_dataset(target, train)
            self._save(
                ridge_fit(design, row_weights(train, self.settings.kappa), self.settings.l2_coeff),
                train,
                potential,
            )
        else:
            warm, warm_reason = warm_start(initial_potential, target)
            run_pacemaker(
                self.workdir, potential, initial_potential if warm else None, deadline - time.monotonic()
            )
            self._save(BBasisConfiguration(str(potential)), train, potential)
        _check_finite(potential)

        yace = self.workdir / "potential.yace"
        self._run(["pace_yaml2yace", potential.name, "-o", yace.name], deadline)
        active_set_atoms = self._active_set(files["train"], potential, deadline)
        committee = self._fit_committee(design, train) if self.settings.committee_size else []

        return {
            "potential": str(potential),
            "potential_yace": str(yace),
            "active_set": str(potential.with_suffix(".asi")),
            "committee": [str(p) for p in committee],
            "mode": self.settings.mode,
            "backend": backend,
            "warm_start": warm,
            "warm_start_reason": warm_reason,
            "active_set_atoms": active_set_atoms,
            "n_functions": int(BBasisConfiguration(str(potential)).total_number_of_functions),
            "metrics": fit_metrics(potential, train, validation),
            "n_train": len(train),
            "n_validation": len(validation),
            "reference_energy": reference,
            "datasets": {name: str(path) if path else None for name, path in files.items()},
            "input_file": str(self.workdir / "input.yaml"),
            "wall_time": round(time.monotonic() - start, 3),
        }

    def _prepare_data(self, dataset: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        """Read, check, split, reference and weight the structures."""
        df = ds.read_dataset(dataset)
        in_validation = ds.validation_mask(
            df["name"], self.settings.test_fraction, self.settings.seed, starting=df["generation"] == 0,
            always_train=[is_reference(source) for source in df["source"]],
        )
        ds.check_elements(df[~in_validation], df[in_validation], self.elements)
        ds.check_fittable(df[~in_validation], self.settings.kappa)
        reference = ds.reference_energies(df[~in_validation], self.elements, self.settings.reference_energy)
        ds.add_corrected_energy(df, reference["energies"])
        return ds.normalized_weights(df[~in_validation]), ds.normalized_weights(df[in_validation]), reference

    def _write_datasets(self, train: pd.DataFrame, validation: pd.DataFrame) -> dict[str, Path | None]:
        files: dict[str, Path | None] = {"train": ds.write_pickle(train, self.workdir / "train.pkl.gzip")}
        files["validation"] = (
            ds.write_pickle(validation, self.workdir / "validation.pkl.gzip") if len(validation) else None
        )
        return files

    def _fit_committee(self, design: LinearACEDataset | None, train: pd.DataFrame) -> list[Path]:
        """K linear models on bootstrap resamples of the training structures, sharing one design matrix.

        `design` is the linear fit's own design matrix; beside a nonlinear fit a linear basis of the same
        size is built for the committee.
        """
        if design is None:
            design = design_dataset(_linear_basis(self.settings, self.elements), train)
        folder = self.workdir / "committee"
        folder.mkdir(exist_ok=True)
        paths = []
        resamples = bootstrap_multiplicities(len(train), self.settings.committee_size, self.settings.seed)
        for k, counts in enumerate(resamples):
            paths.append(folder / f"member_{k:02d}.yaml")
            weights = row_weights(train, self.settings.kappa, counts)
            self._save(ridge_fit(design, weights, self.settings.l2_coeff), train, paths[-1])
        return paths

    def _save(self, conf: BBasisConfiguration, train: pd.DataFrame, path: Path) -> None:
        """Write a fitted potential, with the ZBL core `CORE_MARGIN` below the data when `repulsion: auto`."""
        if self.settings.repulsion == "auto":
            add_core_repulsion(conf, train, self.elements)
        conf.save(str(path))

    def _active_set(self, train: Path, potential: Path, deadline: float) -> str:
        """Build the active set, by default from the atoms the fit reproduces well (pace_activeset drops
        force-error outliers, Q3 + 1.5 IQR); from all atoms when that leaves fewer environments of an element
        than functions, as it can with little data (pre-flight only counts all training atoms). Returns which."""
        try:
            self._run(["pace_activeset", "-d", train.name, potential.name], deadline)
            return "well fitted"
        except TrainingFailure as err:
            if err.kind != "subprocess_failed" or UNDER_DETERMINED not in str(err):
                raise
        self._run(["pace_activeset", "-d", train.name, "--all-atoms", potential.name], deadline)
        return "all"

    def _run(self, args: list[str], deadline: float) -> None:
        program = args[0]
        run_tool(
            [executable(program), *args[1:]],
            self.workdir,
            self.workdir / f"{program}.log",
            deadline - time.monotonic(),
        )


def _linear_basis(settings: TrainingSettings, elements: list[str]) -> BBasisConfiguration:
    """The linear-mode basis of the same size, for a committee beside a nonlinear fit."""
    linear = settings.model_copy(update={"mode": "linear", "ndensity": 1, "fs_parameters": [1.0, 1.0]})
    return basis_from_input(
        render_input(linear, elements, train_file="-", validation_file=None, backend="pyace")
    )


def _has_weights(df: pd.DataFrame) -> bool:
    """Pacemaker normalises test weights too: a test set with zero total weight would give 0/0."""
    return df["w_energy"].sum() > 0 and sum(w.sum() for w in df["w_forces"]) > 0


def _check_finite(potential: Path) -> None:
    coefficients = np.asarray(BBasisConfiguration(str(potential)).get_all_coeffs())
    if not np.all(np.isfinite(coefficients)):
        raise TrainingFailure(
            f"The fitted potential {potential} has non-finite coefficients (NaN loss).", "nan_loss"
        )


def fit(
    dataset: str,
    settings: dict,
    elements: list[str],
    workdir: str,
    initial_potential: str | None = None,
) -> dict[str, Any]:
    """The TRAIN app: fit one generation's potential from the core's extxyz `dataset` into `workdir`.

    `settings` is `TrainingSettings.model_dump(mode="json")`; `initial_potential` the previous
    generation's potential.yaml (a warm start in nonlinear mode when the basis is unchanged). Returns
    absolute paths `potential`, `potential_yace`, `active_set`, `committee`; `mode`, `backend`,
    `warm_start` and `warm_start_reason`, `metrics` {train, validation, by_config_type} of
    {energy_rmse_mev_atom, force_rmse_mev_a, n_structures}, `n_train`, `n_validation`, `n_functions`,
    `reference_energy` {method, energies}, `datasets`, `input_file`, `wall_time` (s).
    Raises TrainingFailure (a TrainingError) whose `kind` names the cause.
    """
    try:
        parsed = TrainingSettings.model_validate(settings)
    except ValidationError as err:
        raise TrainingFailure(f"Invalid training settings: {err}", "invalid_settings") from err
    return PacemakerTrainer(parsed, elements, workdir).fit(dataset, initial_potential)
