"""SELECT with a real (small, linear) ACE potential: D-optimality, diversity, budget, reasons, determinism."""

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from autopipe.apps.explore.candidates import candidate_frame, read_candidates, write_candidates
from autopipe.apps.select import select_candidates
from autopipe.apps.select.fingerprint import distances, fingerprint
from autopipe.errors import ExplorationError, SelectionError

METHODS = ["d_optimal", "max_gamma", "farthest_point", "random"]


def cell(strain: float = 0.0, rattle: float = 0.05, seed: int = 0, repeat: int = 1) -> Atoms:
    """A cubic 4-atom fcc Al cell (repeated), isotropically strained and rattled."""
    atoms = bulk("Al", "fcc", a=4.05 * (1 + strain), cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


def frame(atoms: Atoms, step: int, max_gamma: float, seed: int = 1) -> Atoms:
    """A candidate frame as a walker writes it; the per-atom grade peaks at `max_gamma` on the last atom."""
    gamma = np.full(len(atoms), 1.0)
    gamma[-1] = max_gamma
    return candidate_frame(atoms, gamma, step, 900.0, seed)


def walker_file(directory: Path, frames: list[Atoms]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    write_candidates(frames, directory / "candidates.extxyz")
    return str(directory / "candidates.extxyz")


def select(files, pot, tmp_path, gamma_select=5.0, limit=100, labelled=None, seed=0, **settings) -> dict:
    """SELECT on `files`, with batches of 8 unless `settings` say otherwise (the cases below pick up to 8)."""
    result = select_candidates(
        files,
        {"max_per_generation": 8, **settings},
        gamma_select,
        limit,
        str(tmp_path / "select"),
        potential=pot[0],
        active_set=pot[1],
        labelled=labelled,
        seed=seed,
    )
    json.dumps(result)
    return result


def info(result: dict, key: str) -> list:
    return [s["info"][key] for s in result["selected"]]


@pytest.fixture
def walkers(tmp_path) -> list[str]:
    """Two walkers of distinct frames (strains -4..+4 %, rattles) and one that found nothing."""
    first = [
        frame(cell(0.04 * (k - 2) / 2, 0.1, seed=k), 100 * (k + 1), g) for k, g in enumerate([30, 7, 5.5])
    ]
    second = [
        frame(cell(0.03 - 0.02 * k, 0.15, seed=10 + k), 40 * (k + 1), g, 2) for k, g in enumerate([12, 9, 4])
    ]
    return [
        walker_file(tmp_path / "w0", first),
        walker_file(tmp_path / "w1", second),
        walker_file(tmp_path / "w2", []),
    ]


def test_max_gamma_takes_the_highest_grades_above_threshold(walkers, potential, tmp_path):
    result = select(walkers, potential, tmp_path, method="max_gamma")

    assert info(result, "max_gamma") == [30.0, 12.0, 9.0, 7.0, 5.5]
    assert info(result, "source")[:2] == ["MD 900 K seed 1 step 100", "MD 900 K seed 2 step 40"]
    assert info(result, "selection_rank") == [1, 2, 3, 4, 5]
    assert (result["n_candidates"], result["n_eligible"], result["max_gamma"]) == (6, 5, 30.0)
    written = read_candidates(tmp_path / "select" / "selected.extxyz")
    assert [f.info["source"] for f in written] == info(result, "source")
    assert result["selected"][0]["arrays"]["gamma"] == [1.0, 1.0, 1.0, 30.0]
    assert result["picks"][0] == {
        "source": "MD 900 K seed 1 step 100",
        "max_gamma": 30.0,
        "selection_rank": 1,
        "embedded": False,
        "n_atoms": 4,
    }
    high = select(walkers, potential, tmp_path, gamma_select=10.0, method="max_gamma")
    assert info(high, "max_gamma") == [30.0, 12.0] and high["n_candidates"] == 6


def test_d_optimal_prefers_extrapolative_frames_whatever_their_recorded_grade(potential, tmp_path):
    """Interpolative frames (like the training cells: strain <= 5 %, rattle <= 0.3 A) carry the higher
    recorded grade; extrapolative ones (compressed 12 %, stretched 10 %, rattled 0.45 A) a lower one."""
    interpolative = [
        frame(cell(s, 0.1, seed=k), 100 * k, 20.0 - k) for k, s in enumerate([-0.02, 0.0, 0.02, 0.03])
    ]
    extrapolative = [
        frame(cell(-0.12, 0.05, seed=7), 1000, 6.0),
        frame(cell(0.10, 0.05, seed=8), 1100, 6.0),
        frame(cell(0.0, 0.45, seed=9), 1200, 6.0),
    ]
    files = [walker_file(tmp_path / "w", interpolative + extrapolative)]

    by_grade = select(files, potential, tmp_path, method="max_gamma", max_per_generation=3)
    assert info(by_grade, "step") == [0, 100, 200]
    result = select(files, potential, tmp_path, method="d_optimal", max_per_generation=3)
    assert sorted(info(result, "step")) == [1000, 1100, 1200]
    everything = select(files, potential, tmp_path, method="d_optimal")
    counts = info(everything, "maxvol_atoms")
    assert info(everything, "step")[:3] == info(result, "step") and counts == sorted(counts, reverse=True)
    assert min(counts[:3]) > max(counts[3:]) > 0  # barely-extrapolating atoms (gamma 1.01-1.5) enter too...
    assert 100 not in info(everything, "step")  # ...but a frame the active set spans (gamma < 0.7) never does


@pytest.mark.parametrize("method", METHODS)
def test_never_more_than_the_budget_and_never_two_near_duplicates(method, potential, tmp_path):
    """Seven distinct cells, each also in a second walker and again 5 MD steps later in the first."""
    distinct = [cell(0.03 * (k - 3), 0.2, seed=k) for k in range(7)]
    first = [frame(a, 100 * k, 8.0 + k) for k, a in enumerate(distinct)]
    nearby = [frame(a, 100 * k + 5, 8.5 + k) for k, a in enumerate(distinct)]
    copies = [frame(a, 100 * k, 7.0 + k, seed=2) for k, a in enumerate(distinct)]
    files = [walker_file(tmp_path / "a", first + nearby), walker_file(tmp_path / "b", copies)]

    for limit in (0, 3, 100):
        result = select(files, potential, tmp_path, limit=limit, method=method)
        picked = [Atoms(s["numbers"], s["positions"], cell=s["cell"], pbc=True) for s in result["selected"]]
        assert len(picked) <= min(limit, 8)
        if method != "d_optimal":  # d_optimal leaves out frames the active set already spans
            assert len(picked) == min(limit, 7)
        prints = np.array([fingerprint(a, 5.0, ["Al"]) for a in picked] or np.zeros((0, 1)))
        apart = distances(prints, prints)
        assert all(apart[i, j] > 0.05 for i, j in combinations(range(len(picked)), 2))


def test_frames_a_few_steps_apart_in_one_walker_are_near_duplicates(potential, tmp_path):
    frames = [frame(cell(0.0, 0.2, seed=k), step, 20.0 - k) for k, step in enumerate([100, 110, 120, 130])]
    files = [
        walker_file(tmp_path / "a", frames),
        walker_file(tmp_path / "b", [frame(cell(0.01, 0.2, 9), 110, 16.0, 2)]),
    ]

    result = select(files, potential, tmp_path, method="max_gamma", min_step_separation=20)
    # a/110 is 10 steps from a/100, a/130 10 from a/120; b/110 is another walker
    assert info(result, "source") == [
        f"MD 900 K seed {s} step {n}" for s, n in [(1, 100), (1, 120), (2, 110)]
    ]
    assert len(select(files, potential, tmp_path, method="max_gamma", min_step_separation=5)["selected"]) == 5


@pytest.mark.parametrize("method", METHODS)
def test_labelled_structures_and_their_supercells_are_not_picked_again(method, potential, tmp_path):
    """A walker's first frame is the labelled cell it started from: it must not be counted as a new label."""
    start, other = cell(0.02, 0.1, seed=1), cell(-0.03, 0.2, seed=2)
    labelled = tmp_path / "labelled.extxyz"
    write(labelled, [start], format="extxyz")
    files = [
        walker_file(
            tmp_path / "w", [frame(start, 0, 9.0), frame(start * (2, 1, 1), 50, 8.0), frame(other, 100, 6.0)]
        )
    ]

    result = select(files, potential, tmp_path, labelled=str(labelled), method=method)

    assert info(result, "step") in ([100], [])  # d_optimal may find even `other` spanned by the active set
    if method == "farthest_point" and result["selected"]:
        assert info(result, "nearest_distance")[0] > 0.05


def test_random_and_farthest_point_record_why_and_repeat_for_a_seed(walkers, potential, tmp_path):
    one = select(walkers, potential, tmp_path, seed=1, method="random", max_per_generation=3)
    assert one == select(walkers, potential, tmp_path, seed=1, method="random", max_per_generation=3)
    assert sorted(info(one, "random_draw")) == info(one, "random_draw")
    others = [
        info(select(walkers, potential, tmp_path, seed=s, method="random"), "step") for s in range(2, 8)
    ]
    assert any(
        steps != info(select(walkers, potential, tmp_path, seed=1, method="random"), "step")
        for steps in others
    )

    fps = select(walkers, potential, tmp_path, method="farthest_point")
    assert info(fps, "max_gamma")[0] == 30.0  # nothing labelled: the first pick is the highest grade
    later = [s["info"]["nearest_distance"] for s in fps["selected"][1:]]  # to the picks before it
    assert later == sorted(later, reverse=True) and later[-1] > 0.05
    assert fps == select(walkers, potential, tmp_path, method="farthest_point")


def test_no_candidates_gives_an_empty_selection(potential, tmp_path):
    empty = walker_file(tmp_path / "quiet", [])
    for files in ([], [empty]):
        result = select(files, potential, tmp_path)
        assert (result["selected"], result["picks"], result["n_candidates"], result["max_gamma"]) == (
            [],
            [],
            0,
            None,
        )


def test_missing_inputs_and_bad_settings_are_named_errors(potential, tmp_path):
    with pytest.raises(ExplorationError, match="nowhere.extxyz' of an exploration walker does not exist"):
        select([str(tmp_path / "nowhere.extxyz")], potential, tmp_path)
    bare = frame(cell(), 0, 9.0)
    del bare.info["walker_seed"], bare.arrays["gamma"]
    with pytest.raises(ExplorationError, match="lacks walker_seed, the per-atom gamma array"):
        select([walker_file(tmp_path / "bare", [bare])], potential, tmp_path)
    files = [walker_file(tmp_path / "w", [frame(cell(), 0, 9.0)])]
    with pytest.raises(
        SelectionError, match="potential '.*missing.yaml' needed for selection does not exist"
    ):
        select(files, (str(tmp_path / "missing.yaml"), potential[1]), tmp_path)
    with pytest.raises(SelectionError, match="active set '.*missing.asi' needed for D-optimal"):
        select(files, (potential[0], str(tmp_path / "missing.asi")), tmp_path)
    with pytest.raises(SelectionError, match="labelled structures '.*none.extxyz' does not exist"):
        select(files, potential, tmp_path, labelled=str(tmp_path / "none.extxyz"))
    with pytest.raises(SelectionError, match="method"):
        select(files, potential, tmp_path, method="best")
