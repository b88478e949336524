"""D-optimality with pyace's own MaxVol, exactly as `pace_select -p pot.yaml -a pot.asi` ranks frames.

The active set (`.asi` holds its pseudo-inverse) spans the atomic environments the potential was fitted on.
MaxVol is run over the B-basis projections of every candidate atom together with the active set's rows;
an atom that replaces an active-set row enlarges the spanned volume, i.e. the potential would extrapolate
there. Frames are ranked by how many of their atoms enter: a frame that only repeats what the active set
(or a better-ranked frame) already spans gets 0 and is not worth a label.
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from pyace import ACEBBasisSet, BBasisConfiguration
from pyace.activelearning import (
    compute_A_active_inverse,
    compute_active_set,
    compute_B_projections,
    load_active_inverse_set,
)

from autopipe.errors import SelectionError

#: MaxVol stops when no row would grow the volume by more than this factor (pace_select's default).
GAMMA_TOLERANCE = 1.01
#: Row swaps per element at most (pace_select's default).
MAXVOL_ITERATIONS = 300


def load_basis(potential: str) -> ACEBBasisSet:
    """The potential's B-basis (its .yaml), or a SelectionError naming the file."""
    if not Path(potential).is_file():
        raise SelectionError(f"The potential '{potential}' needed for selection does not exist.")
    try:
        return ACEBBasisSet(BBasisConfiguration(str(potential)))
    except RuntimeError as err:
        raise SelectionError(f"The potential '{potential}' cannot be loaded by pyace: {err}") from err


def maxvol_counts(frames: list[Atoms], basis: ACEBBasisSet, active_set: str) -> np.ndarray:
    """For each frame, how many of its atoms MaxVol moves into the active set (pace_select's ranking key)."""
    if not Path(active_set).is_file():
        raise SelectionError(f"The active set '{active_set}' needed for D-optimal selection does not exist.")
    counts = np.zeros(len(frames), dtype=int)
    if not frames:
        return counts
    current = compute_A_active_inverse(load_active_inverse_set(active_set))
    projections, frame_of_atom = compute_B_projections(basis, frames, return_structure_ind_dict=True)
    _, chosen = compute_active_set(
        projections,
        frame_of_atom,
        tol=GAMMA_TOLERANCE,
        max_iters=MAXVOL_ITERATIONS,
        extra_A0_projections_dict={s: current[s] for s in projections},
    )
    for rows in chosen.values():
        entered = np.asarray(rows, dtype=int)
        np.add.at(counts, entered[entered >= 0], 1)
    return counts
