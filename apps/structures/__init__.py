"""Starting structures (INIT) and the JSON-able form in which structures cross the Parsl boundary."""

from .generate import initial_structures
from .serialize import atoms_from_dict, atoms_to_dict
from .settings import GeneratorSettings, StructuresSettings
from .vacuum import has_vacuum

__all__ = [
    "GeneratorSettings",
    "StructuresSettings",
    "atoms_from_dict",
    "atoms_to_dict",
    "has_vacuum",
    "initial_structures",
]
