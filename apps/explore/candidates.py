"""Candidate frames: what a walker keeps and the extxyz file that carries them to SELECT.

Each frame holds positions, cell and pbc only (no ACE energies or forces, so nobody mistakes them for
labels), the per-atom extrapolation grade as the array ``gamma``, and in ``info``: ``max_gamma``, ``step``,
``temperature`` and ``walker_seed``.
"""

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write

CANDIDATES_FILE = "candidates.extxyz"
LAST_TRUSTED_FILE = "last_trusted.extxyz"  # the walker's last checked frame below gamma_select


def candidate_frame(atoms: Atoms, gamma: np.ndarray, step: int, temperature: float, seed: int) -> Atoms:
    """A bare copy of the current MD frame, tagged with its extrapolation grade and origin."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.set_array("gamma", np.asarray(gamma, dtype=float).copy())
    frame.info.update(
        max_gamma=float(np.max(gamma)), step=int(step), temperature=float(temperature), walker_seed=int(seed)
    )
    return frame


class CandidatePool:
    """Keeps at most `size` frames, those with the highest max gamma, sorted highest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.frames: list[Atoms] = []

    def add(self, frame: Atoms) -> None:
        self.frames.append(frame)
        self.frames.sort(key=lambda f: f.info["max_gamma"], reverse=True)
        del self.frames[self.size :]


def write_candidates(frames: list[Atoms], path: str | Path) -> None:
    """Write frames as extxyz; an empty list gives an empty file (the walker found nothing)."""
    if frames:
        write(path, frames, format="extxyz")
    else:
        Path(path).write_text("")


def write_last_trusted(frame: Atoms | None, folder: Path) -> str | None:
    """Write the walker's last trustworthy frame, from which the next generation may continue; its path."""
    if frame is None:
        return None
    write(folder / LAST_TRUSTED_FILE, frame, format="extxyz")
    return str(folder / LAST_TRUSTED_FILE)


def read_candidates(path: str | Path) -> list[Atoms]:
    """Read every frame of a candidates file (an empty file holds none), with plain Python info values."""
    if os.path.getsize(path) == 0:
        return []
    frames = read(path, index=":", format="extxyz")
    for frame in frames:
        frame.info = {k: v.item() if isinstance(v, np.generic) else v for k, v in frame.info.items()}
    return frames
