"""Recovery handlers for failed pw.x attempts, one per remedy, tried in the order of QE_HANDLERS.

Each is `(failure, params) -> new params | None` (see autopipe.apps.retry) and changes as little as it can,
so an attempt's recorded `changes` say exactly what was tried. The remedies are the ones the field uses
(aiida-quantumespresso's PwBaseWorkChain): lower mixing, another diagonaliser, more bands.

No handler changes what a label computes: smearing, cutoffs and k-points are the dataset's, so labels of
one training set share their physics (a label recovered with twice the smearing would be another
functional of the same structure). The SCF remedies take turns (mixing, diagonaliser, mixing, ...), so
each gets a try within the default `dft.max_attempts` of 4.
"""

import math
from typing import Any

from ..retry import Failure
from .parameters import MIXING_BETA_FLOOR

SCF_KINDS = {"scf_not_converged", "scf_accuracy_above_threshold"}
DIAGONALIZATION_KINDS = {
    "cholesky",
    "s_matrix_not_positive_definite",
    "too_many_bands_not_converged",
    "eigenvectors_not_converged",
}
DIAGONALIZATION_ORDER = ["david", "cg", "ppcg"]
MIXING_FACTOR = 0.7
MAXSTEP_FACTOR = 2
MAXSTEP_CAP = 1000
TIMEOUT_FACTOR = 2.0

Params = dict[str, Any]


def longer_timeout(failure: Failure, params: Params) -> Params | None:
    """A timeout is retried once, with twice the time limit."""
    if failure.kind != "timeout" or params.get("timeout_extended"):
        return None
    return {**params, "timeout": params["timeout"] * TIMEOUT_FACTOR, "timeout_extended": True}


def more_bands(failure: Failure, params: Params) -> Params | None:
    """The highest band is occupied: 5% more bands, at least 4 more."""
    if failure.kind != "top_band_occupied" or not failure.details.get("nbnd"):
        return None
    nbnd = failure.details["nbnd"]
    return {**params, "nbnd": max(nbnd + 4, math.ceil(nbnd * 1.05))}


def lower_mixing_beta(failure: Failure, params: Params) -> Params | None:
    """SCF did not converge: mixing_beta x0.7 (not below the floor) and twice the SCF steps; it waits its
    turn while mixing was lowered more often than the diagonaliser was switched and a switch is left."""
    if failure.kind not in SCF_KINDS or params["mixing_beta"] <= MIXING_BETA_FLOOR:
        return None
    position = _switches(params)
    if params.get("mixing_lowered", 0) > position and position + 1 < len(DIAGONALIZATION_ORDER):
        return None
    return {
        **params,
        "mixing_beta": max(MIXING_BETA_FLOOR, round(params["mixing_beta"] * MIXING_FACTOR, 4)),
        "electron_maxstep": min(MAXSTEP_CAP, params["electron_maxstep"] * MAXSTEP_FACTOR),
        "mixing_lowered": params.get("mixing_lowered", 0) + 1,
    }


def switch_diagonalization(failure: Failure, params: Params) -> Params | None:
    """Diagonaliser trouble, or SCF trouble on its turn after lower_mixing_beta: david -> cg -> ppcg."""
    if failure.kind not in DIAGONALIZATION_KINDS | SCF_KINDS:
        return None
    position = _switches(params)
    if position + 1 >= len(DIAGONALIZATION_ORDER):
        return None
    return {**params, "diagonalization": DIAGONALIZATION_ORDER[position + 1]}


def _switches(params: Params) -> int:
    """How far along DIAGONALIZATION_ORDER the current diagonaliser is (-1 for one outside it)."""
    current = params["diagonalization"]
    return DIAGONALIZATION_ORDER.index(current) if current in DIAGONALIZATION_ORDER else -1


QE_HANDLERS = [longer_timeout, more_bands, lower_mixing_beta, switch_diagonalization]
