"""EXPLORE: real Langevin walkers with a real (small, linear) ACE potential fitted to EMT aluminium."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk

from autopipe.apps.explore import read_candidates, run_walker
from autopipe.apps.explore.guards import explosion_reason
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import ExplorationError


def settings(**changes) -> dict:
    return ExplorationSettings(**changes).model_dump(mode="json")


def fcc_cell(a: float = 4.05) -> dict:
    return atoms_to_dict(bulk("Al", "fcc", a=a, cubic=True))


def gamma_log(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "gamma.csv")


def test_cold_walker_on_training_like_cell_finds_nothing(potential, tmp_path):
    result = run_walker(
        fcc_cell(), *potential, settings(steps=300, check_interval=10), 300.0, 1, str(tmp_path)
    )

    assert result["status"] == "finished"
    assert result["steps_done"] == 300
    assert result["max_gamma"] < 3
    assert result["n_candidates"] == 0
    assert Path(result["candidates"]) == tmp_path / "candidates.extxyz"
    assert read_candidates(result["candidates"]) == []
    log = gamma_log(tmp_path)
    assert log["step"].tolist() == list(range(0, 301, 10))
    assert log["max_gamma"].max() == pytest.approx(result["max_gamma"], rel=1e-5)
    [last] = read_candidates(result["last_trusted"])  # the next generation may continue from here
    assert last.info["step"] == 300 and last.info["max_gamma"] < 3 and len(last) == 4
    json.dumps(result)


def test_hot_supercell_collects_candidates_and_halts(potential, tmp_path):
    opts = settings(steps=400, check_interval=5, gamma_select=3, gamma_halt=20, max_frames_per_walker=4)
    supercell = atoms_to_dict(bulk("Al", "fcc", a=4.05, cubic=True) * (2, 2, 2))

    result = run_walker(supercell, *potential, opts, 2000.0, 7, str(tmp_path))

    assert result["status"] == "halted"
    assert result["steps_done"] < 400
    assert result["max_gamma"] >= 20
    assert result["temperature"] == 2000.0
    log = gamma_log(tmp_path)
    assert log["step"].iloc[-1] == result["steps_done"]
    assert result["n_candidates"] == min(4, int((log["max_gamma"] >= 3).sum()))

    frames = read_candidates(result["candidates"])
    assert len(frames) == result["n_candidates"]
    gammas = [f.info["max_gamma"] for f in frames]
    assert gammas == sorted(gammas, reverse=True) and min(gammas) >= 3
    assert frames[0].info["step"] == result["steps_done"]  # the halting frame is kept
    assert frames[0].info["max_gamma"] == pytest.approx(result["max_gamma"])
    [last] = read_candidates(result["last_trusted"])
    assert last.info["step"] == log.loc[log["max_gamma"] < 3, "step"].iloc[-1] and last.info["max_gamma"] < 3
    for frame in frames:
        assert set(frame.info) >= {"max_gamma", "step", "temperature", "walker_seed"}
        assert frame.info["walker_seed"] == 7 and frame.info["temperature"] == 2000.0
        assert frame.arrays["gamma"].shape == (32,)
        assert frame.arrays["gamma"].max() == pytest.approx(frame.info["max_gamma"])
        assert frame.calc is None and "momenta" not in frame.arrays


def test_bcc_cell_is_uncertain_even_when_cold(potential, tmp_path):
    bcc = atoms_to_dict(bulk("Al", "bcc", a=3.2, cubic=True) * (2, 2, 2))

    result = run_walker(
        bcc, *potential, settings(steps=100, max_frames_per_walker=3), 300.0, 2, str(tmp_path)
    )

    assert result["max_gamma"] >= 5
    assert 1 <= result["n_candidates"] <= 3


def test_compressed_cell_halts_at_the_starting_frame(potential, tmp_path):
    result = run_walker(fcc_cell(a=3.7), *potential, settings(steps=100), 300.0, 1, str(tmp_path))

    assert result["status"] == "halted"
    assert result["steps_done"] == 0
    [frame] = read_candidates(result["candidates"])
    assert frame.info["step"] == 0 and frame.info["max_gamma"] >= 25
    assert result["last_trusted"] is None  # nothing to continue from


def test_same_seed_same_trajectory(potential, tmp_path):
    opts = settings(steps=100, check_interval=5)
    runs = {name: tmp_path / name for name in ("a", "b", "other_seed")}
    for name, workdir in runs.items():
        run_walker(fcc_cell(), *potential, opts, 600.0, 11 if name != "other_seed" else 12, str(workdir))

    texts = {name: (workdir / "gamma.csv").read_text() for name, workdir in runs.items()}
    assert texts["a"] == texts["b"]
    assert texts["a"] != texts["other_seed"]


def test_evaporating_cluster_is_reported_as_exploded(potential, tmp_path):
    cluster = bulk("Al", "fcc", a=4.05, cubic=True)
    cluster.pbc = False
    cluster.center(vacuum=6.0)
    opts = settings(steps=300, check_interval=5, gamma_select=1e10, gamma_halt=1e12)

    result = run_walker(atoms_to_dict(cluster), *potential, opts, 20000.0, 3, str(tmp_path))

    assert result["status"] == "exploded"
    assert "flying apart" in result["reason"]
    assert result["steps_done"] < 300
    assert result["n_candidates"] == 0 and read_candidates(result["candidates"]) == []


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([[0, 0, 0], [2.8, 0, 0]], None),
        ([[0, 0, 0], [0.2, 0, 0]], "collapse"),
        ([[0, 0, 0], [2.8, 0, 0], [20, 0, 0]], "flying apart"),
        ([[0, 0, 0], [np.nan, 0, 0]], "non-finite"),
    ],
)
def test_explosion_reason(positions, expected):
    atoms = Atoms("Al" * len(positions), positions=positions)
    reason = explosion_reason(atoms, energy=-1.0, cutoff=5.0, min_distance=0.5)
    assert reason is None if expected is None else expected in reason


def test_non_finite_energy_is_an_explosion():
    assert "non-finite" in explosion_reason(
        bulk("Al", cubic=True), float("inf"), cutoff=5.0, min_distance=0.5
    )


def test_missing_potential_is_an_exploration_error(potential, tmp_path):
    with pytest.raises(ExplorationError, match="potential file .*missing.yaml' does not exist"):
        run_walker(
            fcc_cell(), str(tmp_path / "missing.yaml"), potential[1], settings(), 300.0, 1, str(tmp_path)
        )


def test_unloadable_potential_is_an_exploration_error(potential, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("elements: [Al\n")
    with pytest.raises(ExplorationError, match="Cannot load the ACE potential"):
        run_walker(fcc_cell(), str(broken), potential[1], settings(), 300.0, 1, str(tmp_path))


def test_element_outside_the_potential_is_an_exploration_error(potential, tmp_path):
    copper = atoms_to_dict(bulk("Cu", "fcc", a=3.6, cubic=True))
    with pytest.raises(ExplorationError, match="cannot evaluate the starting structure"):
        run_walker(copper, *potential, settings(), 300.0, 1, str(tmp_path))


def test_npt_walkers_change_the_cell_and_pressure_sets_its_direction(potential, tmp_path):
    """NPT (MTK) lets the cell breathe; squeezing at +5 GPa ends smaller than pulling at -2 GPa."""
    volumes = {}
    for pressure in (-2.0, 5.0):
        result = run_walker(atoms_to_dict(bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)), *potential,
                            settings(steps=200, gamma_select=1e3, gamma_halt=2e3), 300.0, 3,
                            str(tmp_path / f"p{pressure}"), pressure=pressure)
        assert result["status"] == "finished" and result["pressure"] == pressure
        log = gamma_log(tmp_path / f"p{pressure}")
        volumes[pressure] = log["volume_per_atom"].iloc[len(log) // 2:].mean()
        assert log["volume_per_atom"].std() > 0.01  # the cell moved
    assert volumes[5.0] < volumes[-2.0]
    nvt = run_walker(fcc_cell(), *potential, settings(steps=50, gamma_select=1e3, gamma_halt=2e3), 300.0, 3,
                     str(tmp_path / "nvt"))
    assert nvt["pressure"] is None
    assert gamma_log(tmp_path / "nvt")["volume_per_atom"].nunique() == 1  # NVT keeps the cell


def test_the_schedule_runs_each_temperature_in_each_ensemble_and_pressure():
    schedule = ExplorationSettings(temperatures=[300, 600], ensembles=["nvt", "npt"], pressures=[0, 2],
                                   walkers_per_temperature=2).schedule()
    assert schedule == [(t, p) for t in (300, 600) for p in (None, 0, 2) for _ in range(2)]
    with pytest.raises(ValueError, match="lists an ensemble twice"):
        ExplorationSettings(ensembles=["nvt", "nvt"])
