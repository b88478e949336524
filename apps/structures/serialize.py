"""Structures travel between the core and the apps as plain dicts, so every app input is JSON-able.

Extra per-atom arrays (e.g. a force mask) ride along under ``arrays``; ``info`` holds JSON-able scalars.
"""

from typing import Any

import numpy as np
from ase import Atoms


def atoms_to_dict(atoms: Atoms) -> dict[str, Any]:
    """Return a JSON-able dict of numbers, positions, cell, pbc, extra arrays and info.

    >>> from ase.build import bulk
    >>> atoms_to_dict(bulk("Al"))["numbers"]
    [13]
    """
    extra = {k: v.tolist() for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "arrays": extra,
        "info": {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool))},
    }


def atoms_from_dict(data: dict[str, Any]) -> Atoms:
    """Inverse of `atoms_to_dict`."""
    atoms = Atoms(numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"])
    for name, values in data.get("arrays", {}).items():
        atoms.set_array(name, np.asarray(values))
    atoms.info.update(data.get("info", {}))
    return atoms
