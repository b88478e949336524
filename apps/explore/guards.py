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
    first, second, distance = neighbor_list("ijd", atoms, cutoff)
    if len(distance) and distance.min() < min_distance:
        k = int(distance.argmin())
        return (
            f"atoms {first[k]} and {second[k]} are {distance[k]:.3f} A apart, closer than "
            f"min_distance={min_distance} A (collapse)"
        )
    isolated = np.setdiff1d(np.arange(len(atoms)), first)
    if len(isolated):
        return (
            f"{len(isolated)} atom(s) (first: {isolated[0]}) have no neighbour within the {cutoff:.2f} A "
            "cutoff (atoms flying apart)"
        )
    return None
