"""Nonlinear TRAIN mode: the real `pacemaker` CLI (pyace and tensorpot backends), warm start, failures."""

import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from pyace import BBasisConfiguration, PyACECalculator
from test_train_data import emt_frames, write_frames
from test_train_linear import shortest_training_distance

from autopipe.apps.train import TrainingFailure, TrainingSettings, fit, nonlinear, trainer
from autopipe.apps.train.linear import CORE_MARGIN
from autopipe.apps.train.pacemaker_input import basis_from_input, render_input
from autopipe.apps.train.tools import check_finite_loss, executable, run_tool

# pyace's evaluator uses finite differences: keep the basis tiny and the iterations few.
TINY = TrainingSettings(
    mode="nonlinear", accuracy="fast", functions_per_element=8, max_iterations=2, backend="pyace"
).model_dump(mode="json")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("data") / "dataset.extxyz", emt_frames(12, repeat=(1, 1, 1)))


@pytest.fixture(scope="module")
def cold_fit(small_dataset, tmp_path_factory):
    return fit(small_dataset, TINY | {"committee_size": 2}, ["Al"], str(tmp_path_factory.mktemp("cold")))


def test_pacemaker_cli_with_pyace_backend_writes_a_loadable_potential(cold_fit):
    assert cold_fit["backend"] == "pyace" and cold_fit["mode"] == "nonlinear"
    assert cold_fit["n_functions"] == 8
    input_file = Path(cold_fit["input_file"])
    assert yaml.safe_load(input_file.read_text())["backend"]["evaluator"] == "pyace"
    log = (input_file.parent / "pacemaker.log").read_text()
    assert "$ " in log and "input.yaml -o potential.yaml" in log and "Iteration" in log
    atoms = emt_frames(1, start=99, repeat=(2, 2, 2))[0]
    calc = PyACECalculator(cold_fit["potential"])
    calc.set_active_set(cold_fit["active_set"])
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert calc.results["gamma"].shape == (32,)
    assert np.isfinite(cold_fit["metrics"]["train"]["force_rmse_mev_a"])


def test_nonlinear_core_starts_below_the_data_as_in_linear_mode(cold_fit):
    """Pacemaker's own core starts at the shortest training distance, where hot MD still goes (eV/A force
    spikes on the benchmark); the trainer puts it CORE_MARGIN lower, as for linear fits."""
    (block,) = BBasisConfiguration(cold_fit["potential"]).funcspecs_blocks
    assert block.inner_cutoff_type == "zbl"
    assert block.r_in == pytest.approx(shortest_training_distance(cold_fit) - CORE_MARGIN, abs=1e-3)


def test_committee_beside_a_nonlinear_fit_is_linear_and_the_same_size(cold_fit):
    members = [BBasisConfiguration(path) for path in cold_fit["committee"]]
    assert len(members) == 2
    assert all(m.total_number_of_functions == cold_fit["n_functions"] for m in members)
    assert {block.ndensityi for m in members for block in m.funcspecs_blocks} == {1}
    assert not np.array_equal(members[0].get_all_coeffs(), members[1].get_all_coeffs())  # different resamples


def test_previous_potential_with_the_same_basis_warm_starts(cold_fit, small_dataset, tmp_path):
    warm = fit(small_dataset, TINY, ["Al"], str(tmp_path), initial_potential=cold_fit["potential"])
    assert warm["warm_start"] is True
    assert f"-p {cold_fit['potential']}" in (tmp_path / "pacemaker.log").read_text()
    assert warm["metrics"]["train"]["force_rmse_mev_a"] < cold_fit["metrics"]["train"]["force_rmse_mev_a"]


def test_changed_basis_or_missing_file_means_a_cold_start(cold_fit):
    wider = TrainingSettings.model_validate(TINY | {"cutoff": 6.0})
    target = basis_from_input(
        render_input(wider, ["Al"], train_file="t", validation_file=None, backend="pyace")
    )
    assert nonlinear.warm_start(cold_fit["potential"], target) == (False, nonlinear.BASIS_CHANGED)
    used, reason = nonlinear.warm_start("/nonexistent/potential.yaml", target)
    assert not used and "not found" in reason


@pytest.mark.slow
@pytest.mark.needs("tensorpot")
def test_tensorpot_backend_short_fit(tmp_path):
    dataset = write_frames(tmp_path / "dataset.extxyz", emt_frames(30))
    settings = TrainingSettings(mode="nonlinear", accuracy="fast", max_iterations=20).model_dump(mode="json")
    result = fit(dataset, settings, ["Al"], str(tmp_path / "fit"))
    assert result["backend"] == "tensorpot"
    assert result["metrics"]["validation"]["force_rmse_mev_a"] < 100
    assert "tensorpot_version" in (tmp_path / "fit" / "potential.yaml").read_text()


def test_pacemaker_exiting_non_zero_is_a_named_error_with_the_log_tail(small_dataset, tmp_path, monkeypatch):
    def bad_input(*args, **kwargs):  # an input pacemaker itself rejects
        return render_input(*args, **kwargs).replace("evaluator: pyace", "evaluator: bogus")

    monkeypatch.setattr(trainer, "render_input", bad_input)
    with pytest.raises(TrainingFailure, match=r"pacemaker failed with exit code 1(.|\n)*bogus") as err:
        fit(small_dataset, TINY, ["Al"], str(tmp_path))
    assert err.value.kind == "subprocess_failed"


def test_timeout_stops_pacemaker_and_its_children(small_dataset, tmp_path):
    settings = TINY | {"max_iterations": 10_000, "timeout": 3.0}
    # 3 s, or 2 s when reading the data took a second of the budget on a loaded machine
    with pytest.raises(TrainingFailure, match=r"still running after [23] s \(the time left of training.timeout\)") as err:
        fit(small_dataset, settings, ["Al"], str(tmp_path))
    assert err.value.kind == "timeout"
    left = [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(tmp_path)]
    assert left == []


def test_killed_program_reads_as_out_of_memory(tmp_path):
    suicide = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    with pytest.raises(TrainingFailure, match="ran out of memory") as err:
        run_tool(suicide, tmp_path, tmp_path / "tool.log", timeout=30)
    assert err.value.kind == "out_of_memory"


def test_nan_in_the_logged_loss_is_a_named_error(tmp_path):
    log = tmp_path / "pacemaker.log"
    log.write_text(
        "Iteration   #1    (205 evals):      Loss: 2.2e-01 |\nIteration   #2    (9 evals):      Loss: nan |\n"
    )
    with pytest.raises(TrainingFailure, match="NaN") as err:
        check_finite_loss(log)
    assert err.value.kind == "nan_loss"


def test_missing_executable_is_a_named_error():
    with pytest.raises(TrainingFailure, match="pace_no_such_tool") as err:
        executable("pace_no_such_tool")
    assert err.value.kind == "missing_executable"


def test_asking_for_tensorpot_without_it_says_how_to_install(monkeypatch):
    monkeypatch.setattr(nonlinear, "tensorpot_available", lambda: False)
    assert nonlinear.resolve_backend("auto") == "pyace"
    with pytest.raises(TrainingFailure, match="--no-deps") as err:
        nonlinear.resolve_backend("tensorpot")
    assert err.value.kind == "missing_executable"
