"""ASSESS with the real pw.x: a run killed while its DFT references are computed resumes without computing
any finished reference again, and ends with a verdict against fresh DFT."""

import json
from collections import Counter

import pytest
from test_loop_e2e import completed_pw_runs, events, finish, kill_when, make_project, start_run

pytestmark = [pytest.mark.slow, pytest.mark.qe]

INPUT = """
project: {{name: al}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 3, scaled: 4, max_volume_change: 0.1}}
dft:
  engine: qe
  command: {command}
  pseudopotentials: {{Al: Al.pz-vbc.UPF}}
  accuracy: fast
  kspacing: 0.25              # fast's own 0.4/A gives Al no E(V) minimum near DFT's a0 (docs/assessment.md)
  timeout: 300
training: {{mode: linear, accuracy: fast, functions_per_element: 16, cutoff: 5.0}}
exploration: {{temperatures: [300], steps: 40, check_interval: 10, gamma_select: 50.0, gamma_halt: 100.0,
               ensembles: [nvt]}}
loop: {{max_generations: 1, dft_budget: 20, seed: 1}}
assess: {{properties: [eos], max_rounds: 0}}
"""


def test_killed_during_reference_dft_resumes_without_recomputing(tmp_path):
    input_path, calls = make_project(tmp_path, "assess", INPUT)
    project = input_path.parent / "al"

    def references_half_done(evs):
        return sum(1 for k, p in evs if k == "task.completed" and '"reference"' in p) >= 4

    killed = kill_when(start_run(input_path), project, references_half_done)
    assert [k for k, _ in events(project)][-1] != "run.finished"
    output = finish(input_path, allowed=(0, 3))

    every = {task for task in completed_pw_runs(calls) if task.startswith("reference-")}
    assert len(every) == 14  # 7 volumes to find DFT's V0, 7 around it
    # A reference whose pw.x ended in the instant of the kill may run again; none other may.
    counted = {task: n for task, n in completed_pw_runs(calls, [killed]).items() if task.startswith("reference-")}
    assert max(counted.values()) == 1, f"references computed more than once: {counted}"
    verdicts = [json.loads(p) for k, p in events(project) if k == "assessment.finished"]
    assert len(verdicts) == 1 and {r["name"] for r in verdicts[0]["rows"]} == {"a0", "B"}
    a0 = next(r for r in verdicts[0]["rows"] if r["name"] == "a0")
    assert a0["dft"] == pytest.approx(3.96, abs=0.03)  # LDA Al with this pseudopotential
    assert "Assessment of generation 0 against fresh DFT" in output
    kinds = Counter(k for k, _ in events(project))
    assert kinds["run.resumed"] == 1 and kinds["run.finished"] == 1
