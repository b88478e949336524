"""The loop's stopping rules in a real run (EMT labels, thread-pool site): the validation target, a validation
set fixed across generations, and "no uncertain configurations" claimed only after a full exploration."""

import subprocess
from pathlib import Path

import pytest
from installed import MLIP_AUTO

from autopipe.config import load_config
from autopipe.errors import ConfigError
from autopipe.events import EventStore, fold
from autopipe.workflow import WorkflowManager

INPUT = """
project: {{name: emt_stop}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 8, strained: 3}}
dft: {{engine: emt}}
training: {{mode: linear, accuracy: fast, functions_per_element: 16, test_fraction: 0.4}}
exploration: {{temperatures: [600], ensembles: [nvt], steps: 60, check_interval: 10, gamma_select: 2.0,
               gamma_halt: 15.0}}
selection: {{max_per_generation: 2}}
loop: {{max_generations: {generations}, dft_budget: 40, seed: 3{target}}}
assess: {{enabled: false}}
"""


def run(folder: Path, generations: int, target: str = "") -> tuple[subprocess.CompletedProcess, object]:
    path = folder / "input.yaml"
    path.write_text(INPUT.format(generations=generations, target=target))
    result = subprocess.run([MLIP_AUTO, "run", str(path), "--site", "threads"], capture_output=True, text=True,
                            timeout=600, check=False)
    with EventStore.open_existing(folder / "emt_stop" / "events.sqlite") as store:
        return result, fold(store.events())


def test_a_met_validation_target_ends_the_loop_with_its_numbers(tmp_path):
    result, state = run(tmp_path, generations=4, target=", target_force_rmse: 100000")
    assert result.returncode == 0, result.stderr
    assert list(state.models) == [0]
    rmse = state.models[0]["metrics"]["validation"]["force_rmse_mev_a"]
    assert state.reason == (
        f"validation target met: validation force RMSE {rmse:.1f} meV/A <= loop.target_force_rmse 100000 meV/A"
    )


def test_the_fixed_validation_set_is_the_same_in_every_generation(tmp_path):
    """The validation set grows with the labels; its generation-0 part does not, so that curve compares."""
    result, state = run(tmp_path, generations=3)
    assert result.returncode == 0, result.stderr
    assert len(state.models) >= 2, state.reason
    fixed = [m["metrics"]["fixed_validation"] for m in state.models.values()]
    grown = [m["metrics"]["validation"] for m in state.models.values()]
    assert fixed[0] == grown[0] and fixed[0]["n_structures"] >= 1
    assert {f["n_structures"] for f in fixed} == {fixed[0]["n_structures"]}
    assert all(g["n_structures"] >= f["n_structures"] for f, g in zip(fixed, grown))
    assert state.reason.startswith(("no uncertain configurations: the full exploration schedule",
                                    "generation limit reached", "exploration incomplete"))


def test_a_target_without_a_validation_set_is_refused(tmp_path):
    path = tmp_path / "input.yaml"
    path.write_text(INPUT.format(generations=2, target=", target_force_rmse: 20").replace(
        "test_fraction: 0.4", "test_fraction: 0"))
    with pytest.raises(ConfigError, match="loop.target_force_rmse is 20 meV/A but training.test_fraction is 0"):
        load_config(path)


def walker(generation: int, index: int, status: str, reason: str | None = None) -> dict:
    candidates = f"generations/gen_{generation:03d}/explore/walker_0_{index:03d}/md/candidates.extxyz"
    return {"key": f"explore-{index}", "kind": "explore", "generation": generation, "wall_time": 1.0,
            "result": {"status": status, "reason": reason, "steps_done": 60, "n_candidates": 0,
                       "max_gamma": 1.2, "candidates": candidates}}


@pytest.mark.parametrize(
    ("walkers", "n_walkers", "round_", "gaps"),
    [
        ([("finished", None)] * 3, 3, 0, ""),
        ([("finished", None), ("exploded", "atoms 1 and 2 are 0.41 A apart"), ("exploded", "non-finite positions")],
         3, 0, "2 of 3 walkers exploded (atoms 1 and 2 are 0.41 A apart)"),
        ([("finished", None), ("halted", None)], 3, 0, "1 of 3 walkers failed; 1 of 3 walkers halted"),
        ([("finished", None)] * 3, 3, 1, "round 1 was aimed at a failed assessment, not the configured schedule"),
    ],
)
def test_exploration_gaps_name_what_the_walkers_did_not_cover(tmp_path, walkers, n_walkers, round_, gaps):
    path = tmp_path / "input.yaml"
    path.write_text(INPUT.format(generations=2, target=""))
    manager = WorkflowManager(load_config(path), "threads", {}, "")
    with EventStore(tmp_path / "events.sqlite") as store:
        payloads = [walker(1, i, status, reason) for i, (status, reason) in enumerate(walkers)]
        for payload in payloads:
            store.append("task.completed", payload)
        store.append("exploration.finished", {
            "generation": 1, "n_walkers": n_walkers, "n_candidates": 0, "max_gamma": 1.2, "halted": 0,
            "round": round_, "candidates": sorted(p["result"]["candidates"] for p in payloads)})
        manager.run_state = fold(store.events())
    assert manager.exploration_gaps(1) == gaps
