"""Signs that an MD trajectory has blown up, so a walker stops instead of sending garbage to DFT.

A potential fitted to little data can pull atoms onto each other or fling them apart long before its
extrapolation grade is checked again; such frames are not informative, only broken.
"""

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def explosion_reason(atoms: Atoms, energy: float, cutoff: float, min_distance: float) -> str | None:
    """Say why this frame is unphysical, or return None when it looks sane.

    Checks, in order: finite positions and energy; no pair closer than `min_distance` (collapse);
    every atom has a neighbour within the potential's `cutoff` (an atom with none has flown away).

    >>> from ase.build import bulk
    >>> explosion_reason(bulk("Al", cubic=True), -0.01, cutoff=5.0, min_distance=0.5) is None
    True
    """
    if not (np.all(np.isfinite(atoms.positions)) and np.isfinite(energy)):
        return "non-finite positions or energy"
    pair = closest_pair(atoms, min_distance)
    if pair:
        return f"atoms {pair[0]} and {pair[1]} are {pair[2]:.3f} A apart, closer than min_distance={min_distance} A (collapse)"
    isolated = np.setdiff1d(np.arange(len(atoms)), neighbor_list("i", atoms, cutoff))
    if len(isolated):
        return (
            f"{len(isolated)} atom(s) (first: {isolated[0]}) have no neighbour within the {cutoff:.2f} A "
            "cutoff (atoms flying apart)"
        )
    return None


def closest_pair(atoms: Atoms, within: float) -> tuple[int, int, float] | None:
    """The two atoms (or an atom and an image) closest to each other and their distance, if it is below
    `within`; None when no pair is that close. A short `within` keeps the neighbour list small.

    >>> from ase import Atoms
    >>> closest_pair(Atoms("Al2", positions=[[0, 0, 0], [0, 0, 1]], cell=[5, 5, 5], pbc=True), 1.5)
    (0, 1, 1.0)
    """
    first, second, distance = neighbor_list("ijd", atoms, within)
    if not len(distance):
        return None
    k = int(distance.argmin())
    return int(first[k]), int(second[k]), float(distance[k])
