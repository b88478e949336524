"""The workflow's promises at the command line, on the fast path: EMT labels (ASE's reference potential,
not DFT) and the thread-pool site, with the real pyace fit and MD. The real-pw.x path is in test_loop_e2e.py.
"""

import copy
import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ase.db
import pytest
from ase.build import bulk
from ase.io import read, write
from installed import MLIP_AUTO, mlip_auto

from autopipe.apps.dft.settings import OPERATIONAL_KEYS
from autopipe.apps.structures import atoms_to_dict
from autopipe.config import load_config, written_keys
from autopipe.events import EventStore, canonical_json, fold, run_lock
from autopipe.workflow import WorkflowManager, check_compatible

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


def interrupt_during_training(input_path: Path) -> tuple[int, str]:
    """Run `input_path` and SIGTERM the run once its first fit is submitted; the exit code and stderr."""
    events_file = input_path.parent / "emt_al" / "events.sqlite"
    process = subprocess.Popen([MLIP_AUTO, "run", str(input_path), "--site", "threads"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (events_file.exists() and "train" in _submitted_kinds(events_file)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_sigterm_stops_with_130_and_the_rerun_finishes(tmp_path):
    input_path = write_input(tmp_path)
    code, stderr = interrupt_during_training(input_path)
    assert code == 130
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


# --- resuming after an upgrade of mlip-autopipe ---------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """The EMT project stopped by SIGTERM while fitting generation 0 (its input); tests resume copies of it."""
    input_path = write_input(tmp_path_factory.mktemp("interrupted"))
    assert interrupt_during_training(input_path)[0] == 130
    return input_path


def started_by_an_older_version(interrupted: Path, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the interrupted project as an older mlip-autopipe would have left it: `edit` changes the
    config its `run.started` records (a setting that did not exist yet, another default), hashed as that
    version hashed it. The log is written anew through EventStore, which chains the hashes, so it verifies.
    Returns the copy's input, which writes what the user wrote then."""
    shutil.copytree(interrupted.parent, folder, dirs_exist_ok=True)
    events_file = folder / "emt_al" / "events.sqlite"
    with EventStore.open_existing(events_file) as store:
        events = store.events()
    events_file.unlink()
    with EventStore(events_file) as store:
        for event in events:
            payload = event.payload
            if event.kind == "run.started":
                config = copy.deepcopy(payload["config"])
                edit(config)
                payload = {**payload, "config": config, "config_hash": _hash_as_started(config)}
            store.append(event.kind, payload)
    assert mlip_auto("events", "verify", str(folder / "emt_al")).returncode == 0
    return folder / "input.yaml"


def _hash_as_started(config: dict[str, Any]) -> str:
    """`SystemConfig.config_hash` of a stored config that today's schema would not produce."""
    hashed = {key: value for key, value in config.items() if key != "project_dir"}
    hashed["dft"] = {key: value for key, value in config["dft"].items() if key not in OPERATIONAL_KEYS}
    return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()


def _without_end_members(config: dict[str, Any]) -> None:
    del config["structures"]["generator"]["end_members"]  # added in a later version


def _two_walkers_per_temperature(config: dict[str, Any]) -> None:
    config["exploration"]["walkers_per_temperature"] = 2  # the default then; the input does not write it


def _after_resume(project: Path) -> tuple[set[str], list[dict[str, Any]], list[Any]]:
    """The keys completed before the (first) resume, the `run.resumed` payloads, and the events after it."""
    with EventStore.open_existing(project / "events.sqlite") as store:
        events = store.events()
    first = next(i for i, e in enumerate(events) if e.kind == "run.resumed")
    done = {e.payload["key"] for e in events[:first] if e.kind == "task.completed"}
    return done, [e.payload for e in events if e.kind == "run.resumed"], events[first:]


def test_a_run_started_before_a_setting_existed_resumes_and_recomputes_nothing(interrupted, finished, tmp_path):
    input_path = started_by_an_older_version(interrupted, tmp_path, _without_end_members)
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 0 and "DONE" in result.stdout, result.stderr
    assert "take their defaults: structures.generator.end_members" in " ".join(result.stderr.split())
    done, resumed, after = _after_resume(tmp_path / "emt_al")
    again = {e.payload["key"] for e in after if e.kind in ("task.submitted", "task.retried")}
    assert done and not again & done
    assert [p["config_hash"] for p in resumed] == [load_config(input_path).config_hash()]
    with EventStore.open_existing(tmp_path / "emt_al" / "events.sqlite") as store:
        tasks = sorted(fold(store.events()).tasks)
    with EventStore.open_existing(finished.parent / "emt_al" / "events.sqlite") as store:
        assert tasks == sorted(fold(store.events()).tasks)  # the run the input makes today, uninterrupted


def test_a_default_that_changed_keeps_the_value_the_run_started_with(interrupted, tmp_path):
    input_path = started_by_an_older_version(interrupted, tmp_path, _two_walkers_per_temperature)
    project = tmp_path / "emt_al"
    before = kinds(project)
    changed = tmp_path / "changed.yaml"
    changed.write_text(input_path.read_text().replace("max_per_generation: 2", "max_per_generation: 3"))
    refused = mlip_auto("run", str(changed), "--site", "threads", "--workdir", str(project))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "different input: selection.max_per_generation changed" in message
    assert "walkers_per_temperature" not in message
    assert kinds(project) == before

    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 0 and "DONE" in result.stdout, result.stderr
    message = " ".join(result.stderr.split())
    assert "kept the values this run started with for exploration.walkers_per_temperature" in message
    done, resumed, after = _after_resume(project)
    again = {e.payload["key"] for e in after if e.kind in ("task.submitted", "task.retried")}
    assert done and not again & done
    walkers = [e.payload["n_walkers"] for e in after if e.kind == "exploration.finished"]
    assert walkers and set(walkers) == {4}  # 600 K, NVT and NPT, two walkers each: the run's setting
    assert resumed[0]["config_hash"] != load_config(input_path).config_hash()


def test_every_later_resume_goes_on_with_the_config_the_run_started_with(interrupted, tmp_path):
    def older(config: dict[str, Any]) -> None:
        _without_end_members(config)
        _two_walkers_per_temperature(config)

    input_path = started_by_an_older_version(interrupted, tmp_path, older)
    today = load_config(input_path)
    with EventStore.open_existing(tmp_path / "emt_al" / "events.sqlite") as store:
        used = []
        for _ in range(3):
            config = check_compatible(today, store, written_keys(input_path))
            WorkflowManager(config, "threads", {"light": "threads"}, "").open(store)
            used.append(config)
        resumed = [e.payload["config_hash"] for e in store.events() if e.kind == "run.resumed"]
    assert used[0] == used[1] == used[2]
    assert used[0].exploration.walkers_per_temperature == 2 and used[0].structures.generator.end_members
    assert used[0].model_dump(exclude={"exploration"}) == today.model_dump(exclude={"exploration"})
    assert resumed == [used[0].config_hash()] * 3


def test_a_key_deleted_from_the_input_since_the_run_started_is_refused(interrupted, tmp_path):
    shutil.copytree(interrupted.parent, tmp_path, dirs_exist_ok=True)
    input_path = tmp_path / "input.yaml"
    input_path.write_text(input_path.read_text().replace("selection: {max_per_generation: 2}\n", ""))
    before = kinds(tmp_path / "emt_al")
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 2
    assert "different input: selection.max_per_generation changed" in " ".join(result.stderr.split())
    assert kinds(tmp_path / "emt_al") == before


def test_a_run_started_with_a_setting_this_version_removed_is_refused_in_one_paragraph(interrupted, tmp_path):
    def with_a_removed_setting(config: dict[str, Any]) -> None:
        config["exploration"]["thermostat"] = "berendsen"  # a key an older version had, this one does not

    input_path = started_by_an_older_version(interrupted, tmp_path, with_a_removed_setting)
    before = kinds(tmp_path / "emt_al")
    result = mlip_auto("run", str(input_path), "--site", "threads")
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "was started by another version of mlip-autopipe" in message
    assert "exploration.thermostat: unknown key" in message
    assert kinds(tmp_path / "emt_al") == before
