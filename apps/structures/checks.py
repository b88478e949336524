"""What makes a frame unusable as a periodic cell, said before DFT or a potential meets it.

Both choke on such frames with messages about their own internals (a singular matrix, NaN energies), so the
frame is refused first, with the reason in the user's terms.
"""

import numpy as np
from ase import Atoms

#: A^3 per atom a cell may hold. Below 1, denser than any solid at a terapascal (diamond there: about 3);
#: above 10,000, emptier than any slab with vacuum or molecule in a box worth MD: a unit typo (nm, Bohr)
#: or a placeholder cell.
VOLUME_PER_ATOM = (1.0, 10_000.0)


def cell_problem(atoms: Atoms) -> str | None:
    """Why `atoms` is no usable periodic cell ("has ..."), or None: finite positions and cell, three
    linearly independent cell vectors, a volume per atom within `VOLUME_PER_ATOM`.

    >>> from ase.build import bulk
    >>> cell_problem(bulk("Al", cubic=True)) is None
    True
    """
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
        return "has positions or a cell that are not finite numbers (NaN or infinity)"
    if atoms.cell.rank < 3:
        return "has no full 3D cell (DFT and MD here need periodic cells)"
    if abs(atoms.cell.volume) < 1e-6 * np.prod(atoms.cell.lengths()):  # the vectors' triple product, normalised
        return "has no full 3D cell: its three cell vectors are coplanar (the cell has no volume)"
    volume = abs(atoms.cell.volume) / max(len(atoms), 1)
    low, high = VOLUME_PER_ATOM
    if not low <= volume <= high:
        return (f"has a volume of {volume:.3g} A^3 per atom, outside the {low:g} to {high:,.0f} A^3 per atom "
                "of solids, liquids, slabs with vacuum and molecules in boxes (check the cell's units)")
    return None
