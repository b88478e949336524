"""Whether a periodic cell holds vacuum (a slab, a cluster): such a cell must not run NPT, whose barostat
would close the gap and turn the surface back into bulk."""

import numpy as np
from ase import Atoms

MIN_VACUUM = 4.0  # Angstrom: wider than the spacing of atomic planes in any dense crystal (graphite's 3.35)


def has_vacuum(atoms: Atoms, min_gap: float = MIN_VACUUM) -> bool:
    """True when, along some cell axis, the atoms leave an empty slab wider than `min_gap`.

    >>> from ase.build import bulk, fcc111
    >>> has_vacuum(bulk("Al", cubic=True)), has_vacuum(fcc111("Al", (2, 2, 4), vacuum=5.0, periodic=True))
    (False, True)
    """
    spacing = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # distance between lattice planes
    for axis in range(3):
        fractions = np.sort(atoms.get_scaled_positions(wrap=True)[:, axis])
        gaps = np.diff(np.append(fractions, fractions[0] + 1.0))
        if gaps.max() * spacing[axis] > min_gap:
            return True
    return False
