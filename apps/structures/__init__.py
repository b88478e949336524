"""Starting structures (INIT) and the JSON-able form in which structures cross the Parsl boundary."""

from .generate import initial_structures
from .serialize import atoms_from_dict, atoms_to_dict
from .settings import GeneratorSettings, StructuresSettings

__all__ = [
    "GeneratorSettings",
    "StructuresSettings",
    "atoms_from_dict",
    "atoms_to_dict",
    "initial_structures",
]
