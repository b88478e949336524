"""The workflow's promises at the command line, on the fast path: EMT labels (ASE's reference potential,
not DFT) and the thread-pool site, with the real pyace fit and MD. The real-pw.x path is in test_loop_e2e.py.
"""

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import ase.db
import pytest
from ase.build import bulk
from ase.io import read, write
from installed import MLIP_AUTO, mlip_auto

from autopipe.apps.structures import atoms_to_dict
from autopipe.config import load_config
from autopipe.events import EventStore, fold, run_lock
from autopipe.workflow import WorkflowManager

INPUT = """
project: {{name: emt_al}}
elements: [Al]
structures:
{structures}
dft: {{engine: emt, max_failed_fraction: {max_failed}}}
training: {{mode: linear, accuracy: fast, functions_per_element: 16}}
exploration: {{temperatures: [600], steps: 100, check_interval: 10, gamma_select: 2.0, gamma_halt: 15.0}}
selection: {{max_per_generation: 2}}
loop: {{max_generations: 2, dft_budget: 30, seed: 3}}
assess: {{enabled: false}}  # assessed in test_assess.py / test_assess_qe.py
"""
GENERATOR = "  generator: {prototype: fcc, cubic: true, rattled: 6, strained: 2}"


def write_input(folder: Path, structures: str = GENERATOR, max_failed: float = 0.5) -> Path:
    path = folder / "input.yaml"
    path.write_text(INPUT.format(structures=structures, max_failed=max_failed))
    return path


def kinds(project: Path) -> list[str]:
    with EventStore.open_existing(project / "events.sqlite") as store:
        return [e.kind for e in store.events()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One EMT project run to DONE on the thread-pool site."""
    input_path = write_input(tmp_path_factory.mktemp("done"))
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 0, result.stderr
    assert "DONE" in result.stdout
    return input_path


def test_run_reaches_done_with_labels_potentials_and_logs(finished):
    project = finished.parent / "emt_al"
    with EventStore.open_existing(project / "events.sqlite") as store:
        state = fold(store.events())
    assert state.outcome == "done" and state.state == "DONE"
    assert sorted(state.models) == [0, 1]
    for generation in (0, 1):
        assert (project / "potentials" / f"gen_{generation:03d}.yaml").is_file()
        assert (project / "potentials" / f"gen_{generation:03d}.asi").is_file()
        metrics = state.models[generation]["metrics"]
        assert metrics["validation"]["force_rmse_mev_a"] >= 0
    with ase.db.connect(project / "structures.db") as db:
        labelled = [row for row in db.select() if row.get("task_key")]
        assert len(labelled) == len(state.labels_done()) >= 9
        assert all(row.data["label"]["engine"] == "emt" for row in labelled)
    assert (project / "system.json").is_file() and (project / "input.yaml").is_file()
    assert "run.finished" in (project / "logs" / "autopipe.log").read_text()


def test_rerunning_a_finished_project_recomputes_nothing(finished):
    project = finished.parent / "emt_al"
    before = kinds(project)
    result = mlip_auto("run", str(finished), "--site", "threads")
    assert result.returncode == 0 and "DONE" in result.stdout
    assert kinds(project) == before


def test_resume_with_a_changed_input_is_refused_and_writes_nothing(finished):
    project = finished.parent / "emt_al"
    before = kinds(project)
    changed = finished.parent / "changed.yaml"
    changed.write_text(finished.read_text().replace("max_per_generation: 2", "max_per_generation: 3"))
    result = mlip_auto("run", str(changed), "--site", "threads", "--workdir", str(project))
    assert result.returncode == 2
    assert "selection.max_per_generation" in result.stderr and "Traceback" not in result.stderr
    assert kinds(project) == before


def test_a_second_concurrent_run_is_refused(finished):
    project = finished.parent / "emt_al"
    with run_lock(project):
        result = mlip_auto("run", str(finished), "--site", "threads")
    assert result.returncode == 2
    assert "already being run" in result.stderr


def test_export_writes_every_label_as_extxyz(finished, tmp_path):
    project = finished.parent / "emt_al"
    result = mlip_auto("export", str(project), str(tmp_path / "labels.extxyz"))
    assert result.returncode == 0, result.stderr
    frames = read(tmp_path / "labels.extxyz", index=":")
    with EventStore.open_existing(project / "events.sqlite") as store:
        labels = fold(store.events()).labels_done()
    assert len(frames) == len(labels) and f"Wrote {len(frames)} structures" in result.stdout
    assert all(abs(f.get_forces().sum(axis=0)).max() < 1e-6 for f in frames)  # EMT forces sum to zero
    assert {f.info["config_type"] for f in frames} == {"initial", "md"}
    missing = mlip_auto("export", str(tmp_path), str(tmp_path / "x.extxyz"))
    assert missing.returncode == 2 and "structures.db" in missing.stderr


def test_events_verify_reports_the_first_edited_row(finished, tmp_path):
    project = tmp_path / "copy"
    project.mkdir()
    (project / "events.sqlite").write_bytes((finished.parent / "emt_al" / "events.sqlite").read_bytes())
    ok = mlip_auto("events", "verify", str(project))
    assert ok.returncode == 0 and "OK" in ok.stdout
    listing = mlip_auto("events", "list", str(project), "--kind", "model.trained")
    assert listing.returncode == 0 and "model.trained" in listing.stdout
    with sqlite3.connect(project / "events.sqlite") as conn:
        for (name,) in conn.execute("select name from sqlite_master where type='trigger'").fetchall():
            conn.execute(f"drop trigger {name}")
        conn.execute("update events set payload = replace(payload, 'DFT', 'TRAIN') where seq = 6")
    bad = mlip_auto("events", "verify", str(project))
    assert bad.returncode == 1
    assert "seq 6" in bad.stdout


def test_failed_labels_are_recorded_and_the_run_goes_on(tmp_path):
    """One structure with overlapping atoms is refused before any calculation; tolerated, the run goes on."""
    good = bulk("Al", cubic=True)
    overlapping = good.copy()
    overlapping.positions[1] = overlapping.positions[0] + [0.3, 0.0, 0.0]
    write(tmp_path / "start.extxyz", [overlapping])
    structures = f"  files: [{tmp_path / 'start.extxyz'}]\n" + GENERATOR
    result = mlip_auto("run", str(write_input(tmp_path, structures)), "--site", "threads")
    assert result.returncode == 0, result.stderr
    with EventStore.open_existing(tmp_path / "emt_al" / "events.sqlite") as store:
        state = fold(store.events())
    failed = state.labels_failed()
    assert len(failed) == 1 and failed[0].generation == 0
    assert failed[0].failure_kind == "too_close"
    assert state.outcome == "done"


def test_too_many_failed_labels_stop_the_run_with_exit_1(tmp_path):
    overlapping = bulk("Al", cubic=True)
    overlapping.positions[1] = overlapping.positions[0] + [0.3, 0.0, 0.0]
    write(tmp_path / "start.extxyz", [overlapping])
    structures = f"  files: [{tmp_path / 'start.extxyz'}]\n" + GENERATOR
    result = mlip_auto("run", str(write_input(tmp_path, structures, max_failed=0.0)), "--site", "threads")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "too many failed DFT labels" in result.stdout
    assert kinds(tmp_path / "emt_al")[-1] == "run.finished"


def test_bad_input_to_run_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "input.yaml"
    path.write_text(INPUT.format(structures=GENERATOR, max_failed=0.5).replace("engine: emt", "engine: vasp"))
    result = mlip_auto("run", str(path), "--site", "threads")
    assert result.returncode == 2 and "dft.engine" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_unknown_site_exits_2(tmp_path):
    result = mlip_auto("run", str(write_input(tmp_path)), "--site", "nowhere")
    assert result.returncode == 2 and "nowhere" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_sigterm_stops_with_130_and_the_rerun_finishes(tmp_path):
    input_path = write_input(tmp_path)
    events_file = tmp_path / "emt_al" / "events.sqlite"
    process = subprocess.Popen([MLIP_AUTO, "run", str(input_path), "--site", "threads"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (events_file.exists() and "train" in _submitted_kinds(events_file)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Interrupted" in stderr and "Traceback" not in stderr
    assert kinds(tmp_path / "emt_al")[-1] != "run.finished"
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 0 and "DONE" in result.stdout
    assert kinds(tmp_path / "emt_al").count("run.resumed") == 1


def _submitted_kinds(events_file: Path) -> set[str]:
    with sqlite3.connect(f"file:{events_file}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute("select payload from events where kind = 'task.submitted'").fetchall()
        except sqlite3.OperationalError:
            return set()
    return {json.loads(payload)["kind"] for (payload,) in rows}


def test_a_training_failure_is_a_named_event_and_a_clear_message(tmp_path):
    """pace_activeset cannot finish within a 1 ms limit: the fit fails with kind 'timeout'."""
    path = tmp_path / "input.yaml"
    path.write_text(
        INPUT.format(structures=GENERATOR, max_failed=0.5).replace(
            "functions_per_element: 16}", "functions_per_element: 16, timeout: 0.001}"
        )
    )
    result = mlip_auto("run", str(path), "--site", "threads")
    assert result.returncode == 1
    assert "FAILED: training failed (timeout)" in result.stdout
    with EventStore.open_existing(tmp_path / "emt_al" / "events.sqlite") as store:
        failed = [e.payload for e in store.events() if e.kind == "task.failed"]
    assert [(p["kind"], p["failure_kind"]) for p in failed] == [("train", "timeout")]


def test_replaying_a_tasks_output_adds_its_structures_once(tmp_path):
    """A run killed between storing a task's structures and recording the task adopts its result.json on
    resume, storing the same structures again: the database and the log must each hold them once."""
    config = load_config(write_input(tmp_path))
    config.project_dir.mkdir()
    manager = WorkflowManager(config, "threads", {"light": "threads"}, "")
    structures = [atoms_to_dict(bulk("Al", cubic=True)), atoms_to_dict(bulk("Al", cubic=True, a=4.1))]
    with EventStore(config.project_dir / "events.sqlite") as store:
        manager.open(store)
        first = manager.add_structures(structures, "init-0123456789abcdef", generation=0, config_type="initial")
        again = manager.add_structures(structures, "init-0123456789abcdef", generation=0, config_type="initial")
        added = [e.payload for e in store.events() if e.kind == "structures.added"]
    assert first == again and len(set(first)) == 2
    assert [p["uuids"] for p in added] == [first]
    assert manager.run_state.structures[0]["initial"] == first
    assert len(manager.db.structures()) == 2


def test_the_same_input_in_another_directory_gives_the_same_run(finished, tmp_path):
    """Task keys, uuids and the validation split do not depend on where the project lives."""
    elsewhere = tmp_path / "elsewhere" / "input.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(finished.read_text())
    assert mlip_auto("run", str(elsewhere), "--site", "threads").returncode == 0

    def facts(project: Path) -> tuple:
        with EventStore.open_existing(project / "events.sqlite") as store:
            state = fold(store.events())
        return (sorted(state.tasks), state.structures,
                {g: m["metrics"]["validation"] for g, m in state.models.items()},
                [m["potential"] for m in state.models.values()])

    assert facts(elsewhere.parent / "emt_al") == facts(finished.parent / "emt_al")
