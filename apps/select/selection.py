"""SELECT: choose which exploration candidates go to DFT next, and cut large MD cells down to what DFT affords."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read
from pyace import ACEBBasisSet
from pydantic import ValidationError

from autopipe.apps.explore.candidates import read_candidates, write_candidates
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import ExplorationError, SelectionError

from .doptimal import load_basis, maxvol_counts
from .embedding import embed
from .fingerprint import fingerprint
from .ranking import Batch, Candidate, Pick, at_random, by_max_gamma, by_maxvol
from .settings import SelectionSettings

SELECTED_FILE = "selected.extxyz"
#: What a walker writes into each candidate frame's info, beside the per-atom ``gamma`` array.
FRAME_INFO = ("max_gamma", "step", "temperature", "walker_seed")


def load_candidates(candidate_files: list[str]) -> list[Candidate]:
    """Read every frame of the walkers' candidates files (see autopipe.apps.explore.candidates)."""
    candidates = []
    for path in candidate_files:
        if not Path(path).is_file():
            raise ExplorationError(f"The candidates file '{path}' of an exploration walker does not exist.")
        for frame in read_candidates(path):
            missing = [k for k in FRAME_INFO if k not in frame.info]
            if "gamma" not in frame.arrays:
                missing.append("the per-atom gamma array")
            if missing:
                raise ExplorationError(
                    f"A frame in '{path}' lacks {', '.join(missing)}; candidates files must be written by "
                    "run_walker (explore.candidates.candidate_frame)."
                )
            walker = str(Path(path).resolve())
            candidates.append(Candidate(frame, walker, frame.info["step"], frame.info["max_gamma"]))
    return candidates


def choose(
    candidates: list[Candidate],
    opts: SelectionSettings,
    count: int,
    *,
    basis: ACEBBasisSet,
    active_set: str,
    labelled: Sequence[Atoms] = (),
    seed: int = 0,
) -> list[Pick]:
    """At most `count` diverse candidates by `opts.method`, none a near-duplicate of another or of a
    `labelled` structure; the same inputs and seed give the same picks. `basis` is the potential's
    (`load_basis`): its cutoff and elements define the fingerprints, and MaxVol uses it with `active_set`."""
    if count <= 0 or not candidates:
        return []
    cutoff, elements = float(basis.cutoffmax), list(basis.elements_name)
    prints = np.array([fingerprint(c.atoms, cutoff, elements) for c in candidates])
    known = np.array([fingerprint(a, cutoff, elements) for a in labelled]).reshape(
        len(labelled), prints.shape[1]
    )
    batch = Batch(candidates, prints, known, opts.duplicate_distance, opts.min_step_separation)
    if opts.method == "farthest_point":
        return batch.farthest_first(count)
    if opts.method == "max_gamma":
        return batch.fill(by_max_gamma(candidates), count)
    if opts.method == "random":
        order, why = at_random(candidates, seed)
    else:
        order, why = by_maxvol(candidates, maxvol_counts([c.atoms for c in candidates], basis, active_set))
    return batch.fill(order, count, why)


def prepare_for_dft(pick: Pick, opts: SelectionSettings, cutoff: float) -> Atoms:
    """The pick as it goes to DFT: the whole frame, or, for a frame above `embed_above` atoms, its most
    uncertain atom's neighbourhood embedded in a small periodic cell (apps/select/embedding.py)."""
    frame = pick.candidate.atoms
    structure = None
    if len(frame) > opts.embed_above:
        centre = int(np.argmax(frame.arrays["gamma"]))
        core = opts.embed_core_radius or cutoff
        structure = embed(frame, centre, core, opts.embed_buffer, opts.embed_min_distance_factor)
    embedded = structure is not None and len(structure) < len(frame)
    structure = structure if embedded else frame.copy()
    info = structure.info
    info["source"] = f"MD {info['temperature']:g} K seed {info['walker_seed']} step {pick.candidate.step}"
    info.update(selection_method=opts.method, selection_rank=pick.rank, embedded=embedded, **pick.why)
    return structure


def read_labelled(path: str | None) -> list[Atoms]:
    """The labelled structures an extxyz file holds (none for no file name or an empty file)."""
    if path is None:
        return []
    if not Path(path).is_file():
        raise SelectionError(f"The file of labelled structures '{path}' does not exist.")
    return read(path, index=":", format="extxyz") if Path(path).stat().st_size else []


def select_candidates(
    candidate_files: list[str],
    settings: dict[str, Any],
    gamma_select: float,
    limit: int,
    workdir: str,
    *,
    potential: str,
    active_set: str,
    labelled: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The SELECT app: up to min(max_per_generation, limit) diverse frames with max_gamma >= gamma_select.

    `potential` and `active_set` are the generation's .yaml and .asi (MaxVol, the cutoff for fingerprints
    and embedding); `labelled` an extxyz of the structures labelled so far (never picked again); `seed` drives
    `random`. Each selected structure's info carries ``source`` ("MD 600 K seed 7 step 40"), the walker's
    ``max_gamma``, ``step``, ``temperature`` and ``walker_seed``, and why it was picked: ``selection_method``,
    ``selection_rank`` and, by method, ``maxvol_atoms``, ``random_draw``, ``nearest_distance`` (fingerprint
    distance to the nearest labelled or earlier pick); ``embedded`` tells whether it is a cut-out cell (then
    also ``energy_weight`` 0 and the per-atom ``force_mask``). The picks are also written to
    ``selected.extxyz`` in `workdir`, for a look with ase gui.

    >>> select_candidates(files, {"method": "d_optimal"}, 5.0, 8, "select",  # doctest: +SKIP
    ...                   potential="gen_001.yaml", active_set="gen_001.asi", labelled="labelled.extxyz")
    {'selected': [...], 'picks': [{'source': 'MD 900 K seed 7 step 40', 'maxvol_atoms': 12, ...}], ...}
    """
    try:
        opts = SelectionSettings.model_validate(settings)
    except ValidationError as err:
        raise SelectionError(f"Invalid selection settings: {err}") from err
    Path(workdir).mkdir(parents=True, exist_ok=True)
    candidates = load_candidates(candidate_files)
    eligible = [c for c in candidates if c.max_gamma >= gamma_select]
    basis = load_basis(potential)
    count = max(0, min(opts.max_per_generation, limit))
    picks = choose(
        eligible, opts, count, basis=basis, active_set=active_set, labelled=read_labelled(labelled), seed=seed
    )
    structures = [prepare_for_dft(p, opts, float(basis.cutoffmax)) for p in picks]
    write_candidates(structures, Path(workdir) / SELECTED_FILE)
    summary_keys = (
        "source",
        "max_gamma",
        "selection_rank",
        "embedded",
        *sorted({k for p in picks for k in p.why}),
    )
    return {
        "selected": [atoms_to_dict(s) for s in structures],
        "picks": [
            {k: s.info[k] for k in summary_keys if k in s.info} | {"n_atoms": len(s)} for s in structures
        ],
        "method": opts.method,
        "n_candidates": len(candidates),
        "n_eligible": len(eligible),
        "max_gamma": max((c.max_gamma for c in candidates), default=None),
    }
