"""Ranking candidate frames: highest extrapolation grade first, near-duplicates skipped.

Later methods (D-optimality over the active set, farthest-point sampling) rank the same `Candidate`
list and live next to `pick_by_max_gamma`.
"""

from dataclasses import dataclass

from ase import Atoms

SAME_GAMMA_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Candidate:
    """One candidate frame and where it came from (`walker` is its walker's candidates file)."""

    atoms: Atoms
    walker: str
    step: int
    max_gamma: float


def is_near_duplicate(a: Candidate, b: Candidate, min_step_separation: int) -> bool:
    """Same walker fewer than `min_step_separation` MD steps apart, or max gamma equal within 1e-6."""
    same_stretch = a.walker == b.walker and abs(a.step - b.step) < min_step_separation
    return same_stretch or abs(a.max_gamma - b.max_gamma) <= SAME_GAMMA_TOLERANCE


def pick_by_max_gamma(candidates: list[Candidate], count: int, min_step_separation: int) -> list[Candidate]:
    """Greedily take the highest-gamma candidates, skipping near-duplicates of those already taken."""
    picked: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: c.max_gamma, reverse=True):
        if len(picked) >= count:
            break
        if not any(is_near_duplicate(candidate, p, min_step_separation) for p in picked):
            picked.append(candidate)
    return picked
