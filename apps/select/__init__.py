"""SELECT: choose the most informative uncertain frames from the exploration walkers for DFT."""

from .selection import select_candidates

__all__ = ["select_candidates"]
