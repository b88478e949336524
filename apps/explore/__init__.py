"""EXPLORE: molecular dynamics walkers driven by the current potential, collecting uncertain frames."""

from .candidates import read_candidates
from .walker import run_walker

__all__ = ["read_candidates", "run_walker"]
