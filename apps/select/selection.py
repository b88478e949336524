"""SELECT: choose which exploration candidates go to DFT next."""

from pathlib import Path
from typing import Any

from autopipe.apps.explore.candidates import read_candidates, write_candidates
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import ExplorationError

from .ranking import Candidate, pick_by_max_gamma
from .settings import SelectionSettings

SELECTED_FILE = "selected.extxyz"


def load_candidates(candidate_files: list[str]) -> list[Candidate]:
    """Read every frame of the walkers' candidates files (see autopipe.apps.explore.candidates)."""
    candidates = []
    for path in candidate_files:
        if not Path(path).is_file():
            raise ExplorationError(f"The candidates file '{path}' of an exploration walker does not exist.")
        for frame in read_candidates(path):
            if "max_gamma" not in frame.info or "step" not in frame.info:
                raise ExplorationError(
                    f"A frame in '{path}' lacks info 'max_gamma' or 'step'; candidates files must be written "
                    "by run_walker."
                )
            walker = str(Path(path).resolve())
            candidates.append(Candidate(frame, walker, frame.info["step"], frame.info["max_gamma"]))
    return candidates


def select_candidates(
    candidate_files: list[str], settings: dict[str, Any], gamma_select: float, limit: int, workdir: str
) -> dict[str, Any]:
    """Pick up to min(max_per_generation, limit) frames with max_gamma >= gamma_select, highest first.

    Each selected structure carries info ``max_gamma`` and ``source`` ("MD 600 K seed 7 step 40") besides
    the walker's ``step``, ``temperature`` and ``walker_seed``, and the per-atom ``gamma`` array.
    The picks are also written to ``selected.extxyz`` in `workdir`, for a look with ase gui.

    >>> import tempfile
    >>> select_candidates([], {}, gamma_select=5.0, limit=10, workdir=tempfile.mkdtemp())
    {'selected': [], 'n_candidates': 0, 'max_gamma': None}
    """
    opts = SelectionSettings.model_validate(settings)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    candidates = load_candidates(candidate_files)
    eligible = [c for c in candidates if c.max_gamma >= gamma_select]
    count = max(0, min(opts.max_per_generation, limit))
    picked = pick_by_max_gamma(eligible, count, opts.min_step_separation)
    for candidate in picked:
        info = candidate.atoms.info
        info["source"] = f"MD {info['temperature']:g} K seed {info['walker_seed']} step {candidate.step}"
    write_candidates([c.atoms for c in picked], Path(workdir) / SELECTED_FILE)
    return {
        "selected": [atoms_to_dict(c.atoms) for c in picked],
        "n_candidates": len(candidates),
        "max_gamma": max((c.max_gamma for c in candidates), default=None),
    }
