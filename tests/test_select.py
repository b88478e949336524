"""SELECT: ranking walker candidates by extrapolation grade, with the limit, threshold and duplicates."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from autopipe.apps.explore.candidates import candidate_frame, read_candidates, write_candidates
from autopipe.apps.select import select_candidates
from autopipe.errors import ExplorationError


def write_walker(directory: Path, gammas_by_step: dict[int, float], seed: int = 1) -> str:
    """A walker's candidates file: one rattled fcc frame per step, per-atom gamma peaking at the given max."""
    directory.mkdir(parents=True)
    frames = []
    for step, max_gamma in gammas_by_step.items():
        atoms = bulk("Al", "fcc", a=4.05, cubic=True)
        atoms.rattle(0.05, seed=step)
        frames.append(candidate_frame(atoms, np.array([1.0, 2.0, 0.5, max_gamma]), step, 900.0, seed))
    path = directory / "candidates.extxyz"
    write_candidates(frames, path)
    return str(path)


@pytest.fixture
def walkers(tmp_path) -> list[str]:
    return [
        write_walker(tmp_path / "w0", {100: 30.0, 200: 7.0, 300: 5.5}, seed=1),
        write_walker(tmp_path / "w1", {40: 12.0, 80: 9.0, 120: 4.0}, seed=2),
        write_walker(tmp_path / "w2", {}, seed=3),
    ]


def source(seed: int, step: int) -> str:
    return f"MD 900 K seed {seed} step {step}"


def info(result: dict, key: str) -> list:
    return [s["info"][key] for s in result["selected"]]


def test_highest_gamma_first_above_threshold(walkers, tmp_path):
    result = select_candidates(walkers, {}, gamma_select=5.0, limit=100, workdir=str(tmp_path / "select"))

    assert info(result, "max_gamma") == [30.0, 12.0, 9.0, 7.0, 5.5]
    assert info(result, "source") == [source(1, 100), source(2, 40), source(2, 80), source(1, 200), source(1, 300)]
    assert result["n_candidates"] == 6
    assert result["max_gamma"] == 30.0
    written = read_candidates(tmp_path / "select" / "selected.extxyz")
    assert [f.info["source"] for f in written] == info(result, "source")
    first = result["selected"][0]
    assert first["info"]["walker_seed"] == 1 and first["info"]["temperature"] == 900.0
    assert first["arrays"]["gamma"] == [1.0, 2.0, 0.5, 30.0]
    json.dumps(result)


def test_threshold_drops_frames_below_gamma_select(walkers, tmp_path):
    result = select_candidates(walkers, {}, gamma_select=10.0, limit=100, workdir=str(tmp_path))
    assert info(result, "max_gamma") == [30.0, 12.0]
    assert result["n_candidates"] == 6  # every frame read, not only the eligible ones


@pytest.mark.parametrize(("max_per_generation", "limit", "expected"), [(2, 100, 2), (8, 3, 3), (8, 0, 0)])
def test_count_is_the_smaller_of_setting_and_limit(walkers, tmp_path, max_per_generation, limit, expected):
    result = select_candidates(
        walkers,
        {"max_per_generation": max_per_generation},
        gamma_select=5.0,
        limit=limit,
        workdir=str(tmp_path),
    )
    assert info(result, "max_gamma") == [30.0, 12.0, 9.0, 7.0, 5.5][:expected]


def test_nearby_frames_of_one_walker_are_duplicates(tmp_path):
    files = [
        write_walker(tmp_path / "a", {100: 20.0, 110: 19.0, 120: 18.0, 130: 17.0}),
        write_walker(tmp_path / "b", {110: 16.0}, seed=2),
    ]
    result = select_candidates(files, {"min_step_separation": 20}, 5.0, 10, str(tmp_path))
    # a/110 is 10 steps from a/100; a/120 is 20 steps away (kept); b/110 is another walker (kept)
    assert info(result, "source") == [source(1, 100), source(1, 120), source(2, 110)]


def test_equal_max_gamma_is_a_duplicate(tmp_path):
    files = [write_walker(tmp_path / "a", {10: 8.0}), write_walker(tmp_path / "b", {10: 8.0 + 1e-7, 50: 6.0}, seed=2)]
    result = select_candidates(files, {}, 5.0, 10, str(tmp_path))
    # b/10 (8.0000001) outranks a/10 (8.0), which then counts as the same frame
    assert info(result, "source") == [source(2, 10), source(2, 50)]


def test_no_candidates_gives_an_empty_selection(tmp_path):
    empty = write_walker(tmp_path / "quiet", {})
    for files in ([], [empty]):
        assert select_candidates(files, {}, 5.0, 10, str(tmp_path)) == {
            "selected": [],
            "n_candidates": 0,
            "max_gamma": None,
        }


def test_missing_candidates_file_is_an_error(tmp_path):
    with pytest.raises(ExplorationError, match="nowhere.extxyz' of an exploration walker does not exist"):
        select_candidates([str(tmp_path / "nowhere.extxyz")], {}, 5.0, 10, str(tmp_path))
