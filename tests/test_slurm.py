"""The loop on a real SLURM cluster (slurmctld + slurmd on this machine, `scripts/slurm-cluster.sh`), driven
by Parsl's SlurmProvider through `site-configs/slurm-local.yaml`.

Three promises: a run through SLURM gives the same labels and potentials as a local run and records the job
each task ran in; a block cancelled with `scancel` mid-DFT costs retries, not labels; a driver SIGKILLed
while its blocks run or wait in the queue leaves nothing behind once it is restarted.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import ase.db
import pytest
from installed import MLIP_AUTO

from autopipe.executors.jobs import LEDGER
from autopipe.executors.loader import SITE_DIRS

pytestmark = pytest.mark.slow


EMT_INPUT = """
project: {name: emt_al}
elements: [Al]
structures:
  generator: {prototype: fcc, cubic: true, rattled: 6, strained: 2}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 16}
exploration: {temperatures: [600], steps: 100, check_interval: 10, gamma_select: 2.0, gamma_halt: 15.0}
selection: {max_per_generation: 2}
loop: {max_generations: 2, dft_budget: 30, seed: 3}
assess: {enabled: false}  # assessed in test_assess.py / test_assess_qe.py
"""

QE_INPUT = """
project: {{name: al}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: {rattled}, rattle_stdev: 0.05}}
dft: {{engine: qe, command: {command}, pseudopotentials: {{Al: Al.pz-vbc.UPF}}, accuracy: fast, timeout: 300}}
training: {{mode: linear, accuracy: fast, functions_per_element: 8, cutoff: 5.0}}
exploration: {{temperatures: [300], steps: 60, check_interval: 10, gamma_select: 2.0, gamma_halt: 20.0}}
selection: {{max_per_generation: 1}}
loop: {{max_generations: 1, dft_budget: 20, seed: 1}}
assess: {{enabled: false}}
"""


def qe_project(folder: Path, rattled: int) -> tuple[Path, Path]:
    """A QE input whose pw.x is a wrapper logging `start`/`end` per call; returns (input, call log)."""
    folder.mkdir()
    calls = folder / "pw-calls.log"
    wrapper = folder / "pw-logged"
    wrapper.write_text(f'#!/bin/bash\necho "start $PWD" >> {calls}\npw.x "$@"\nrc=$?\n'
                       f'echo "end $PWD $rc" >> {calls}\nexit $rc\n')
    wrapper.chmod(0o755)
    (folder / "input.yaml").write_text(QE_INPUT.format(rattled=rattled, command=wrapper))
    return folder / "input.yaml", calls


def run(input_path: Path, site: str, *args: str) -> str:
    result = subprocess.run([MLIP_AUTO, "run", str(input_path), "--site", site, *args],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def start(input_path: Path, site: str) -> subprocess.Popen:
    return subprocess.Popen([MLIP_AUTO, "run", str(input_path), "--site", site], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(condition: Callable[[], object], process: subprocess.Popen, timeout: float = 180) -> object:
    """Poll `condition` until it returns something true while the run goes on."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert process.poll() is None, f"the run ended first:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def events(project: Path) -> list[tuple[str, dict]]:
    """(kind, payload) of every event so far, read while a run may be writing; [] before the log exists."""
    if not (project / "events.sqlite").exists():
        return []
    with sqlite3.connect(f"file:{project / 'events.sqlite'}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("select kind, payload from events order by seq").fetchall()
        except sqlite3.OperationalError:  # created, its table not yet
            return []
    return [(kind, json.loads(payload)) for kind, payload in rows]


def queue(*states: str) -> dict[str, str]:
    """Job id -> state of the jobs in the queue (optionally only in `states`, e.g. 'PD', 'R')."""
    filters = ["-t", ",".join(states)] if states else []
    lines = subprocess.run(["squeue", "-h", "-o", "%i %t", *filters], capture_output=True, text=True,
                           check=True).stdout.split()
    return dict(zip(lines[::2], lines[1::2], strict=True))


def labels(project: Path) -> Counter:
    """How often each DFT task's label is stored, and how often the log says a DFT task completed."""
    with ase.db.connect(project / "structures.db") as db:
        stored = Counter(row.task_key for row in db.select() if row.get("task_key"))
    completed = Counter(p["key"] for kind, p in events(project) if kind == "task.completed" and p["kind"] == "dft")
    assert stored == completed
    return stored


def each_label_once(project: Path) -> bool:
    """Every DFT task the run submitted has its label, stored once."""
    submitted = {p["key"] for kind, p in events(project) if kind == "task.submitted" and p["kind"] == "dft"}
    return labels(project) == Counter(submitted) and len(submitted) >= 6


def ledger_jobs(project: Path) -> list[str]:
    path = project / "logs" / "parsl" / LEDGER
    return path.read_text().split()[1::2] if path.is_file() else []


def test_loop_through_slurm_equals_the_local_run_and_records_its_jobs(slurm_cluster, tmp_path):
    (tmp_path / "input.yaml").write_text(EMT_INPUT)
    assert "DONE" in run(tmp_path / "input.yaml", "slurm-local", "--workdir", str(tmp_path / "slurm"))
    assert "DONE" in run(tmp_path / "input.yaml", "local", "--workdir", str(tmp_path / "local"))

    slurm, local = tmp_path / "slurm", tmp_path / "local"
    assert labels(slurm) == labels(local) and len(labels(slurm)) >= 9
    with ase.db.connect(slurm / "structures.db") as a, ase.db.connect(local / "structures.db") as b:
        energies = [{r.task_key: r.energy for r in db.select() if r.get("task_key")} for db in (a, b)]
    assert energies[0] == energies[1]
    potentials = sorted(p.name for p in (slurm / "potentials").glob("gen_*.yaml"))
    assert potentials == ["gen_000.yaml", "gen_001.yaml"]
    for name in potentials:
        assert (slurm / "potentials" / name).read_bytes() == (local / "potentials" / name).read_bytes()

    jobs = set(ledger_jobs(slurm))
    done = [p for kind, p in events(slurm) if kind == "task.completed"]
    on_slurm = [p["execution"] for p in done if p["kind"] in ("dft", "train", "explore")]
    assert on_slurm and all(e["job_id"] in jobs and e["host"] == os.uname().nodename for e in on_slurm)
    assert all("job_id" not in p["execution"] for p in done if p["kind"] in ("init", "select"))  # driver threads
    assert not queue(), "the finished run left jobs in the queue"


def test_a_block_cancelled_mid_dft_costs_retries_not_labels(slurm_cluster, tmp_path):
    input_path, calls = qe_project(tmp_path / "scancel", rattled=3)
    project = input_path.parent / "al"
    process = start(input_path, "slurm-local")
    wait_for(lambda: calls.is_file() and "start" in calls.read_text(), process)  # pw.x runs in the job
    (cancelled,) = queue("R")
    subprocess.run(["scancel", cancelled], check=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0 and "DONE" in output, output

    assert each_label_once(project)
    dft = [p["execution"] for kind, p in events(project) if kind == "task.completed" and p["kind"] == "dft"]
    retried = [e for e in dft if e["tries"] > 1]
    assert retried, "no DFT task was in flight in the cancelled block"
    assert all("ManagerLost" in " ".join(e["lost"]) and e["job_id"] != cancelled for e in retried)
    assert cancelled in ledger_jobs(project) and not queue()


def test_a_killed_driver_restarted_cancels_its_leftover_blocks(slurm_cluster, tmp_path):
    site = tmp_path / "two-blocks.yaml"  # two blocks of the whole node: the second waits in the queue
    site.write_text((SITE_DIRS[0] / "slurm-local.yaml").read_text().replace("max_blocks: 1", "max_blocks: 2"))
    input_path, calls = qe_project(tmp_path / "killed", rattled=5)
    project = input_path.parent / "al"
    process = start(input_path, str(site))
    wait_for(lambda: calls.is_file() and "start" in calls.read_text() and "PD" in queue().values(), process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    left = ledger_jobs(project)
    assert sorted(queue().values()) == ["PD", "R"] and set(queue()) == set(left)

    restarted = start(input_path, str(site))
    wait_for(lambda: set(ledger_jobs(project)) - set(left), restarted)  # the new driver's first block
    assert set(queue("PD", "R")).isdisjoint(left), "the killed driver's blocks are still queued or running"
    output, _ = restarted.communicate(timeout=300)
    assert restarted.returncode == 0 and "DONE" in output, output

    assert each_label_once(project)
    assert f"cancelled the slurm jobs left by an earlier driver: {' '.join(left)}" in (
        project / "logs" / "autopipe.log").read_text()
    assert not queue()


def test_driver_job_resubmits_itself_at_the_allocations_end_and_the_run_resumes(slurm_cluster, tmp_path):
    """examples/hpc/driver-job.sbatch: SLURM's end-of-walltime warning (SIGTERM to the batch script, here sent
    with `scancel --batch --signal=TERM`) stops the driver, the job submits itself again, the run resumes."""
    (tmp_path / "input.yaml").write_text(EMT_INPUT)
    recipe = SITE_DIRS[0].parent / "examples" / "hpc" / "driver-job.sbatch"
    submit = subprocess.run(["sbatch", "--parsable", f"--chdir={tmp_path}", str(recipe), "input.yaml", "local"],
                            capture_output=True, text=True, check=True, env={**os.environ, "AUTOPIPE_VENV": sys.prefix})
    first = submit.stdout.strip()
    project = tmp_path / "emt_al"
    deadline = time.monotonic() + 180
    while not any(kind == "task.completed" and p["kind"] == "dft" for kind, p in events(project)):
        assert time.monotonic() < deadline and first in queue(), "the driver job did not start labelling"
        time.sleep(0.2)
    subprocess.run(["scancel", "--batch", "--signal=TERM", first], check=True)
    while not any(kind == "run.finished" for kind, _ in events(project)):
        assert time.monotonic() < deadline + 120, "the resubmitted driver did not finish the run"
        time.sleep(0.5)

    log = (tmp_path / f"mlip-driver-{first}.log").read_text()
    assert "Interrupted" in log and "resubmitting" in log, log
    kinds = [kind for kind, _ in events(project)]
    assert kinds.count("run.started") == 1 and kinds.count("run.resumed") == 1
    assert dict(events(project))["run.finished"]["outcome"] == "done"
    assert each_label_once(project)
    while queue():  # the second driver job ends by itself once the run is DONE: no third one
        assert time.monotonic() < deadline + 180, f"driver jobs left in the queue: {queue()}"
        time.sleep(0.5)
