"""Starting structures (INIT) and the JSON-able form in which structures cross the Parsl boundary."""

from .serialize import atoms_from_dict, atoms_to_dict

__all__ = ["atoms_from_dict", "atoms_to_dict"]
