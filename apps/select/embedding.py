"""Cut an uncertain atom's neighbourhood out of a large MD cell and embed it in a small periodic cube for DFT.

Geometry (docs/exploration.md, figure docs/embedding.png): around the centre atom, the *core* holds every
atom within `core_radius` (by default the potential's cutoff, so the centre's whole ACE environment is
labelled as the MD frame had it); a *buffer* shell `buffer` thick surrounds it so each core atom's DFT
force sees its own neighbours. Every atom whose displacement from the centre lies in the cube of side
L = 2 (core_radius + buffer) is kept, at exactly its displacement from the centre, and the cube becomes a
periodic cell. Where the cut faces meet their periodic images, atoms can come unphysically close: of every
pair across the new boundary closer than `min_distance` x (sum of covalent radii), the buffer atom farther
from the centre is dropped. Core atoms are never moved or dropped, and every core atom is at least `buffer`
from the cube's faces. The cell's energy includes the artificial boundary, so it trains nothing
(`energy_weight` 0); the buffer atoms' forces feel the boundary too, so only core atoms train their forces
(per-atom `force_mask` True on the core, False on the buffer).
"""

from itertools import product

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from autopipe.errors import SelectionError

#: Per-atom arrays that describe the cut itself; every other array of the frame (e.g. ``gamma``) is carried.
OWN_ARRAYS = ("numbers", "positions", "force_mask")


def embed(atoms: Atoms, centre: int, core_radius: float, buffer: float, min_distance: float) -> Atoms | None:
    """The periodic cube around atom `centre` of the periodic frame `atoms`, or None when the frame is not
    larger than that cube (an atom would appear twice) or not periodic in all three directions: label the
    frame whole instead.

    Atoms are ordered centre first, then by distance from it; info gets ``energy_weight`` 0, ``embedded_centre``
    (the centre's index in the frame), ``core_radius``, ``buffer``, ``n_core`` and ``n_dropped`` besides the
    frame's own info.
    """
    side = 2.0 * (core_radius + buffer)
    if not atoms.pbc.all():
        return None
    index, offset = _in_cube(atoms, centre, side / 2.0)
    if len(np.unique(index)) < len(index):
        return None
    radius = np.linalg.norm(offset, axis=1)
    order = np.lexsort((index, radius))
    index, offset, radius = index[order], offset[order], radius[order]
    core = radius <= core_radius + 1e-9
    cube = Atoms(numbers=atoms.numbers[index], positions=offset + side / 2.0, cell=np.eye(3) * side, pbc=True)
    keep = _without_close_images(cube, core, radius, min_distance)
    cube = cube[keep]
    for name, values in atoms.arrays.items():
        if name not in OWN_ARRAYS:
            cube.set_array(name, values[index][keep])
    cube.set_array("force_mask", core[keep])
    cube.info = {
        **atoms.info,
        "energy_weight": 0.0,
        "embedded_centre": int(centre),
        "core_radius": float(core_radius),
        "buffer": float(buffer),
        "n_core": int(core.sum()),
        "n_dropped": int((~keep).sum()),
    }
    return cube


def _in_cube(atoms: Atoms, centre: int, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Every atom (periodic images included) whose displacement from `centre` lies in [-half, half)^3, and
    that displacement. Only the images that can reach the cube are tried, so a large frame costs little."""
    cell = atoms.cell.array
    direct = atoms.positions - atoms.positions[centre]
    nearest = -np.round(np.linalg.solve(cell.T, direct.T).T)  # lattice steps to the nearest image
    widths = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = np.ceil(half * np.sqrt(3.0) / widths + 0.5).astype(int)
    shifts = np.array(list(product(*(range(-r, r + 1) for r in reach))), dtype=float)
    offsets = direct[None, :, :] + (nearest[None, :, :] + shifts[:, None, :]) @ cell
    image, index = np.nonzero(np.all((offsets >= -half) & (offsets < half), axis=2))
    return index, offsets[image, index]


def _without_close_images(
    cube: Atoms, core: np.ndarray, radius: np.ndarray, min_distance: float
) -> np.ndarray:
    """Which atoms stay: of each pair closer than allowed across the cube's boundary, drop the buffer atom
    farther from the centre (pairs in order of distance, so each clash is settled once)."""
    radii = covalent_radii[cube.numbers]
    first, second, length, shift = neighbor_list("ijdS", cube, 2.0 * min_distance * radii.max())
    limit = min_distance * (radii[first] + radii[second])
    clashes = np.flatnonzero(np.any(shift != 0, axis=1) & (length < limit) & (first < second))
    keep = np.ones(len(cube), dtype=bool)
    for k in clashes[np.argsort(length[clashes], kind="stable")]:
        a, b = first[k], second[k]
        if not (keep[a] and keep[b]):
            continue
        if core[a] and core[b]:
            raise SelectionError(
                f"Two core atoms meet across the embedding cell's boundary at {length[k]:.2f} A: the buffer "
                "is too thin for embed_min_distance_factor; raise embed_buffer."
            )
        keep[max((a, b), key=lambda n: (not core[n], radius[n], n))] = False
    return keep
