"""A structure's fingerprint: its smoothed, element-pair-resolved radial distribution, for near-duplicates.

Two frames are near-duplicates when their fingerprints are close. The fingerprint counts neighbours per
atom of the whole structure, so it does not depend on the cell's size: a supercell of a labelled cell, or a
walker's first frame that is the labelled structure it started from, sits at distance 0 from it. It needs no
potential, so distances mean the same in every generation.
"""

from itertools import combinations_with_replacement

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

#: Gaussian width (Angstrom) that smooths each pair distance; about the thermal spread of a bond at 300 K.
SMEARING = 0.1
#: Grid spacing (Angstrom) of the fingerprint's radial axis.
SPACING = 0.05


def fingerprint(atoms: Atoms, cutoff: float, elements: list[str]) -> np.ndarray:
    """Neighbour density per atom of the structure on a radial grid up to `cutoff`, one block per element
    pair (in the order of `elements`), Gaussian-smoothed; periodic images count as neighbours.

    >>> from ase.build import bulk
    >>> bool(np.allclose(fingerprint(bulk("Al"), 5.0, ["Al"]), fingerprint(bulk("Al") * 2, 5.0, ["Al"])))
    True
    """
    grid = np.arange(0.0, cutoff + SPACING / 2, SPACING)
    symbols = np.array(atoms.get_chemical_symbols())
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    blocks = []
    for a, b in combinations_with_replacement(elements, 2):
        pair = ((symbols[i] == a) & (symbols[j] == b)) | ((symbols[i] == b) & (symbols[j] == a))
        density = np.exp(-0.5 * ((grid[None, :] - d[pair, None]) / SMEARING) ** 2).sum(axis=0)
        blocks.append(density / len(atoms))
    return np.concatenate(blocks)


def distances(points: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Distances of every row of `points` (n x m) to every row of `references` (k x m), an n x k array: the
    Euclidean distance relative to the two fingerprints' mean norm. 0 for the same structure; for 32-atom fcc
    Al frames of one 300-900 K EMT trajectory 0.03-0.08 at 20 fs apart, 0.07-0.17 at 100 fs; 0.2 for a 1 %
    strain of a rattled cell."""
    if len(points) == 0 or len(references) == 0:
        return np.zeros((len(points), len(references)))
    difference = np.linalg.norm(points[:, None, :] - references[None, :, :], axis=2)
    norms = np.linalg.norm(points, axis=1)[:, None], np.linalg.norm(references, axis=1)[None, :]
    scale = 0.5 * (norms[0] + norms[1])
    return np.divide(difference, scale, out=np.zeros_like(difference), where=scale > 0)
