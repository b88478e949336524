"""Choosing a diverse batch of candidate frames by one of four methods, each pick with the reason it was made.

Every method walks the candidates in its own order and takes a frame unless it is a near-duplicate of a
labelled structure or of a frame already taken (fingerprint distance at or below `duplicate_distance`, or
the same walker fewer than `min_step_separation` MD steps away):

- ``max_gamma``: highest extrapolation grade first;
- ``d_optimal``: most atoms entering the active set under MaxVol first (pace_select's ranking), frames that
  enlarge nothing are not taken;
- ``farthest_point``: each time the frame farthest (in fingerprint space) from everything labelled or taken;
- ``random``: a seeded random order, the control a benchmark compares against.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from .fingerprint import distances


@dataclass(frozen=True, eq=False)
class Candidate:
    """One candidate frame and where it came from (`walker` is its walker's candidates file)."""

    atoms: Atoms
    walker: str
    step: int
    max_gamma: float


@dataclass(frozen=True)
class Pick:
    """A chosen candidate, its 1-based place in the batch and why it was chosen (JSON-able numbers)."""

    candidate: Candidate
    rank: int
    why: dict[str, Any] = field(default_factory=dict)


class Batch:
    """The picks so far, and each candidate's fingerprint distance to the nearest labelled or picked structure."""

    def __init__(
        self,
        candidates: list[Candidate],
        fingerprints: np.ndarray,
        labelled: np.ndarray,
        duplicate_distance: float,
        min_step_separation: int,
    ) -> None:
        self.candidates = candidates
        self.fingerprints = fingerprints
        self.duplicate_distance = duplicate_distance
        self.min_step_separation = min_step_separation
        nearest = distances(fingerprints, labelled)
        self.nearest = nearest.min(axis=1) if labelled.size else np.full(len(candidates), np.inf)
        self.picks: list[Pick] = []

    def is_duplicate(self, index: int) -> bool:
        """Too close to a labelled or picked structure, or a few MD steps from a picked frame of its walker."""
        if self.nearest[index] <= self.duplicate_distance:
            return True
        mine = self.candidates[index]
        return any(
            p.candidate.walker == mine.walker and abs(p.candidate.step - mine.step) < self.min_step_separation
            for p in self.picks
        )

    def take(self, index: int, why: dict[str, Any]) -> None:
        if np.isfinite(self.nearest[index]):
            why = {**why, "nearest_distance": round(float(self.nearest[index]), 6)}
        self.picks.append(Pick(self.candidates[index], len(self.picks) + 1, why))
        self.nearest = np.minimum(
            self.nearest, distances(self.fingerprints, self.fingerprints[[index]])[:, 0]
        )

    def fill(self, order: list[int], count: int, why: dict[int, dict[str, Any]] | None = None) -> list[Pick]:
        """Take candidates in `order`, skipping near-duplicates, until `count` are taken or none is left."""
        for index in order:
            if len(self.picks) >= count:
                break
            if not self.is_duplicate(index):
                self.take(index, (why or {}).get(index, {}))
        return self.picks

    def farthest_first(self, count: int) -> list[Pick]:
        """Farthest-point sampling: the first pick is the highest grade unless labelled structures exist."""
        left = set(range(len(self.candidates)))
        while len(self.picks) < count and left:
            pool = sorted(left)
            if np.isinf(self.nearest[pool]).all():
                index = max(pool, key=lambda i: (self.candidates[i].max_gamma, -i))
            else:
                index = pool[int(np.argmax(self.nearest[pool]))]
            left.discard(index)
            if not self.is_duplicate(index):
                self.take(index, {})
        return self.picks


def by_max_gamma(candidates: list[Candidate]) -> list[int]:
    """Indices from the highest max gamma down (ties: file order)."""
    return sorted(range(len(candidates)), key=lambda i: (-candidates[i].max_gamma, i))


def by_maxvol(candidates: list[Candidate], counts: np.ndarray) -> tuple[list[int], dict[int, dict[str, Any]]]:
    """Indices of frames with atoms entering the active set, most first (ties: higher max gamma), and
    each one's count."""
    entering = [i for i in range(len(candidates)) if counts[i] > 0]
    order = sorted(entering, key=lambda i: (-int(counts[i]), -candidates[i].max_gamma, i))
    return order, {i: {"maxvol_atoms": int(counts[i])} for i in order}


def at_random(candidates: list[Candidate], seed: int) -> tuple[list[int], dict[int, dict[str, Any]]]:
    """A permutation drawn from `seed`, and each frame's place in it."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(candidates))]
    return order, {index: {"random_draw": place} for place, index in enumerate(order)}
