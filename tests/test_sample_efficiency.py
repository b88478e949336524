"""The sample-efficiency benchmark's smallest configuration, end to end on EMT: the loop, random picks, the
held-out test set, and an output file holding the numbers docs/benchmarks.md reports (about 20 s, so not
marked slow)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_efficiency.py"
SUMMARY_KEYS = {
    "random_converged_force_rmse_mev_a", "random_converged_labels", "labels_random_needs", "labels_loop_needs",
    "label_ratio", "loop_final_labels", "loop_final_force_rmse_mev_a", "loop_final_energy_rmse_mev_atom",
    "random_same_labels_force_rmse_mev_a", "random_same_labels_energy_rmse_mev_atom",
    "loop_final_eos", "random_same_labels_eos", "loop_max_force_rmse_mev_a", "best_generation", "md_steps_per_label", "stop_reason",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("out")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--systems", "Al", "--seeds", "0",
         "--workdir", str(tmp_path_factory.mktemp("work")), "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((out / "results_d_optimal.json").read_text()), out, run.stdout


def test_the_loop_and_random_are_measured_on_the_same_labels(results):
    data, _, _ = results
    (case,) = data["cases"]
    assert (case["system"], case["seed"], case["selection"]) == ("Al", 0, "d_optimal")
    loop_labels = [g["labels"] for g in case["loop"]]
    assert loop_labels == sorted(loop_labels) and len(loop_labels) >= 1
    assert set(loop_labels) <= {r["labels"] for r in case["random"]}
    for point in case["loop"] + case["random"]:
        assert point["force_rmse_mev_a"] > 0 and point["energy_rmse_mev_atom"] >= 0
        assert {"MD 0.97 a0", "MD 1.03 a0", "vacancy", "(111) slab"} <= set(point["by_category"])
    assert case["training"]["functions_per_element"] == 30 and case["training"]["mode"] == "linear"


def test_the_output_holds_the_documented_numbers(results):
    data, out, stdout = results
    summary = data["cases"][0]["summary"]
    assert set(summary) == SUMMARY_KEYS
    assert summary["loop_final_labels"] == data["cases"][0]["loop"][-1]["labels"]
    assert summary["md_steps_per_label"] > 0 and math.isfinite(summary["loop_max_force_rmse_mev_a"])
    assert summary["stop_reason"]
    assert "--quick" in data["command"] and data["wall_s"] > 0
    assert (out / "sample_efficiency_Al_d_optimal.png").stat().st_size > 0
    assert "| Al | 0 |" in stdout
