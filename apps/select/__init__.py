"""SELECT: choose diverse, informative uncertain frames for DFT and cut large MD cells down to what DFT affords."""

from .doptimal import load_basis
from .embedding import embed
from .ranking import Candidate, Pick
from .selection import choose, load_candidates, select_candidates

__all__ = ["Candidate", "Pick", "choose", "embed", "load_basis", "load_candidates", "select_candidates"]
