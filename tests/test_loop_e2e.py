"""The whole loop, end to end, with the real pw.x, pyace and a Parsl HighThroughputExecutor.

One uninterrupted run is the reference. A second run of the same input is SIGKILLed three times, during
DFT, during TRAIN and during EXPLORE, and each time restarted with the same command; it must finish with
the same counts, lose no finished label and never compute a label twice. pw.x is called through a wrapper
script that logs each invocation (its working directory and exit code), so the count is what really ran.
"""

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import ase.db
import pytest
from installed import MLIP_AUTO

pytestmark = [pytest.mark.slow, pytest.mark.qe]


INPUT = """
project: {{name: al}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 5, rattle_stdev: 0.05, strained: 2, max_strain: 0.02}}
dft:
  engine: qe
  command: {command}
  pseudopotentials: {{Al: Al.pz-vbc.UPF}}
  accuracy: fast
  timeout: 300
training: {{mode: linear, accuracy: fast, functions_per_element: 16, cutoff: 5.0}}
exploration:
  temperatures: [300, 900]
  steps: 200
  check_interval: 10
  gamma_select: 2.0
  gamma_halt: 20.0
selection: {{max_per_generation: 2}}
loop: {{max_generations: 2, dft_budget: 20, seed: 1}}
assess: {{enabled: false}}  # assessed in test_assess.py / test_assess_qe.py
"""


def make_project(tmp_path: Path, name: str, template: str = INPUT) -> tuple[Path, Path]:
    """An input file whose pw.x is a logging wrapper; returns (input path, invocation log)."""
    folder = tmp_path / name
    folder.mkdir()
    calls = folder / "pw-calls.log"
    wrapper = folder / "pw-logged"
    wrapper.write_text(
        "#!/bin/bash\n"
        f'echo "start $PWD" >> {calls}\n'
        'pw.x "$@"\nrc=$?\n'
        f'echo "end $PWD $rc $(date +%s.%N)" >> {calls}\n'
        "exit $rc\n"
    )
    wrapper.chmod(0o755)
    (folder / "input.yaml").write_text(template.format(command=wrapper))
    return folder / "input.yaml", calls


def start_run(input_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [MLIP_AUTO, "run", str(input_path), "--site", "local"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def events(project: Path) -> list[tuple[str, str]]:
    """(kind, payload JSON) of every event so far, read while the run writes."""
    path = project / "events.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("select kind, payload from events order by seq").fetchall()
        except sqlite3.OperationalError:
            return []


def kill_when(process: subprocess.Popen, project: Path, ready, timeout: float = 300) -> float:
    """SIGKILL the run's whole process group as soon as `ready(events)` holds; returns the kill time."""
    deadline = time.monotonic() + timeout
    while not ready(events(project)):
        assert process.poll() is None, f"run ended before the kill point:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.time()
    process.wait()
    return killed_at


def finish(input_path: Path, allowed: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run([MLIP_AUTO, "run", str(input_path), "--site", "local"], check=False,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode in allowed, result.stdout + result.stderr
    return result.stdout + result.stderr


def completed_pw_runs(calls: Path, kills: list[float] = ()) -> Counter:
    """Successful pw.x runs per task (the attempt directory's task key).

    A run that ended in the instant its driver was killed (before the result could be stored; the task's
    watchdog needs up to 0.2 s to notice) finished no label: it is not counted.
    """
    ends = [line.split() for line in calls.read_text().splitlines() if line.startswith("end ")]
    return Counter(
        _task_of(cwd)
        for _, cwd, rc, at in ends
        if rc == "0" and not any(0 <= kill - float(at) < 1.0 for kill in kills)
    )


def _task_of(cwd: str) -> str:
    return next(part for part in Path(cwd).parts if part.startswith(("dft-", "reference-")))


def summary(project: Path) -> dict:
    kinds = Counter(kind for kind, _ in events(project))
    with ase.db.connect(project / "structures.db") as db:
        labelled = [row for row in db.select() if row.get("task_key")]
    return {
        "labels": len(labelled),
        "structures": kinds["structures.added"],
        "models": sorted(p.name for p in (project / "potentials").glob("gen_*.yaml")),
        "finished": kinds["run.finished"],
        "dft_completed": sum(1 for kind, payload in events(project)
                             if kind == "task.completed" and '"kind":"dft"' in payload.replace(" ", "")),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    input_path, calls = make_project(tmp_path_factory.mktemp("e2e"), "reference")
    output = finish(input_path)
    return input_path.parent / "al", calls, output


def test_uninterrupted_run_reaches_done(reference):
    project, calls, output = reference
    state = [kind for kind, _ in events(project)]
    assert state[0] == "run.started" and state[-1] == "run.finished"
    assert "DONE" in output
    facts = summary(project)
    assert facts["models"] == ["gen_000.yaml", "gen_001.yaml"]
    assert (project / "potentials" / "gen_001.asi").is_file()
    assert facts["labels"] == facts["dft_completed"] >= 5
    assert sum(completed_pw_runs(calls).values()) == facts["labels"]
    assert (project / "logs" / "autopipe.log").stat().st_size > 0
    verify = subprocess.run([MLIP_AUTO, "events", "verify", str(project)], check=False,
                            capture_output=True, text=True)
    assert verify.returncode == 0 and "OK" in verify.stdout


def test_killed_three_times_resumes_without_recomputing(reference, tmp_path):
    ref_project, _, _ = reference
    input_path, calls = make_project(tmp_path, "killed")
    project = input_path.parent / "al"

    def dft_half_done(evs):
        return sum(1 for k, p in evs if k == "task.completed" and '"dft"' in p) >= 1

    def training(evs):
        return any(k == "task.submitted" and '"train"' in p for k, p in evs)

    def exploring(evs):
        return any(k == "task.submitted" and '"explore"' in p for k, p in evs)

    kills = []
    for ready in (dft_half_done, training, exploring):
        kills.append(kill_when(start_run(input_path), project, ready))
        assert [k for k, _ in events(project)][-1] != "run.finished"
    finish(input_path)

    assert summary(project) == summary(ref_project)
    twice = {task: n for task, n in completed_pw_runs(calls, kills).items() if n > 1}
    assert not twice, f"labels computed more than once: {twice}"
    kinds = Counter(kind for kind, _ in events(project))
    assert kinds["run.resumed"] == 3
    assert kinds["task.retried"] >= 1
