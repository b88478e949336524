"""A damaged or incomplete project is never resumed as if healthy, and no command writes over its files.

One EMT project is run to DONE on the thread-pool site; each test damages its own copy and checks that
`mlip-auto` refuses with exit 2, names what is wrong, and leaves every file as it was.
"""

import hashlib
import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from installed import mlip_auto
from typer.testing import CliRunner

from autopipe.cli import app
from autopipe.config import load_config
from autopipe.database import DatabaseManager
from autopipe.events import EventStore, fold, run_lock
from autopipe.workflow import WorkflowManager

INPUT = """
project: {name: emt_al}
elements: [Al]
structures:
  generator: {prototype: fcc, cubic: true, rattled: 6, strained: 2}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 16}
exploration: {temperatures: [600], steps: 60, check_interval: 10, gamma_select: 2.0, gamma_halt: 15.0}
selection: {max_per_generation: 2}
loop: {max_generations: 1, dft_budget: 30, seed: 3}
assess: {enabled: false}
"""


def refusal(*args: str) -> subprocess.CompletedProcess:
    """The same command in-process (the refusals come before any work, in milliseconds)."""
    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def fingerprint(project: Path) -> dict[str, str]:
    """SHA-256 of every file of the project, of SQLite files their rows (a reader may fold the WAL
    into the main file): what 'nothing was written' means."""
    return {
        str(p.relative_to(project)): hashlib.sha256(content(p)).hexdigest()
        for p in sorted(project.rglob("*"))
        if p.is_file() and p.name != "autopipe.log" and not p.name.endswith(("-wal", "-shm"))
    }


def content(path: Path) -> bytes:
    if path.suffix not in (".sqlite", ".db"):
        return path.read_bytes()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return "\n".join(conn.iterdump()).encode()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The input file of one EMT project run to DONE."""
    folder = tmp_path_factory.mktemp("done")
    (folder / "input.yaml").write_text(INPUT)
    result = mlip_auto("run", str(folder / "input.yaml"), "--site", "threads")
    assert result.returncode == 0, result.stderr
    return folder / "input.yaml"


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """A private copy of the finished project (input.yaml next to it); returns the project directory."""
    shutil.copy(finished, tmp_path / "input.yaml")
    shutil.copytree(finished.parent / "emt_al", tmp_path / "emt_al")
    return tmp_path / "emt_al"


@pytest.fixture
def started(tmp_path) -> Path:
    """A project whose run has started (run.started, INIT entered, structures.db created) but not finished."""
    (tmp_path / "input.yaml").write_text(INPUT)
    config = load_config(tmp_path / "input.yaml")
    config.project_dir.mkdir()
    with EventStore(config.project_dir / "events.sqlite") as store:
        WorkflowManager(config, "threads", {"light": "threads"}, INPUT).open(store)
    return config.project_dir


def rerun(project: Path) -> subprocess.CompletedProcess:
    return refusal("run", str(project.parent / "input.yaml"), "--site", "threads")


def tamper(project: Path, *statements: str) -> None:
    with sqlite3.connect(project / "events.sqlite") as conn:
        for (name,) in conn.execute("select name from sqlite_master where type='trigger'").fetchall():
            conn.execute(f"drop trigger {name}")
        for statement in statements:
            conn.execute(statement)


@pytest.mark.parametrize(
    ("damage", "bad_seq"),
    [
        (("delete from events where seq = 3",), 3),
        (("update events set payload = replace(payload, '\"INIT\"', '\"DFT\"') where seq = 2",), 2),
        (("update events set seq = -2 where seq = 2", "update events set seq = 2 where seq = 3",
          "update events set seq = 3 where seq = -2"), 2),
    ],
    ids=["deleted event", "edited state", "swapped rows"],
)
def test_a_log_that_fails_verification_is_not_resumed(started, damage, bad_seq):
    with EventStore(started / "events.sqlite") as store:  # a few more events to damage
        store.append("state.entered", {"state": "DFT", "generation": 0, "reason": "initial structures ready"})
    tamper(started, *damage)
    before = fingerprint(started)
    result = rerun(started)
    assert result.returncode == 2, result.stderr
    assert f"fails verification at seq {bad_seq}" in result.stderr and "Traceback" not in result.stderr
    assert "backup" in result.stderr
    assert fingerprint(started) == before


def test_a_damaged_finished_log_is_not_reported_as_done(copy):
    tamper(copy, "delete from events where seq = 5")
    result = rerun(copy)
    assert result.returncode == 2 and "seq 5" in result.stderr and "DONE" not in result.stdout


@pytest.mark.parametrize("victim", ["events.sqlite", "structures.db", "input.yaml", "generations/x.extxyz"])
def test_export_never_writes_over_project_files(copy, victim):
    before = fingerprint(copy)
    result = refusal("export", str(copy), str(copy / victim))
    assert result.returncode == 2, result.stdout
    assert "refusing to write" in result.stderr and "outside the project" in result.stderr
    assert fingerprint(copy) == before
    assert refusal("export", str(copy), str(copy.parent / "labels.extxyz")).returncode == 0


def test_init_never_writes_over_project_files(copy):
    before = fingerprint(copy)
    result = refusal("init", str(copy / "input.yaml"), "--force")
    assert result.returncode == 2 and "refusing to write" in result.stderr
    assert fingerprint(copy) == before


def test_a_finished_project_without_its_structure_database_is_explained(copy):
    (copy / "structures.db").unlink()
    result = rerun(copy)
    assert result.returncode == 2, result.stdout
    assert "structures.db is missing" in result.stderr and "DONE" not in result.stdout
    assert not (copy / "structures.db").exists()


def test_a_started_project_without_its_structure_database_is_explained_not_a_crash(started):
    (started / "structures.db").unlink()
    before = fingerprint(started)
    result = rerun(started)
    assert result.returncode == 2 and "structures.db is missing" in result.stderr
    assert "KeyError" not in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(started) == before and not (started / "structures.db").exists()


def test_a_project_without_its_event_log_is_not_silently_started_over(copy):
    (copy / "events.sqlite").unlink()
    before = fingerprint(copy)
    result = rerun(copy)
    assert result.returncode == 2 and "events.sqlite is missing" in result.stderr
    assert "computed again" in result.stderr
    assert fingerprint(copy) == before


def test_the_run_lock_holds_when_its_file_is_deleted(copy):
    with run_lock(copy) as lock_file:
        lock_file.unlink()
        result = rerun(copy)
    assert result.returncode == 2 and "already being run" in result.stderr


def test_a_workdir_that_is_a_file_is_refused(copy):
    result = refusal("run", str(copy.parent / "input.yaml"), "--site", "threads",
                     "--workdir", str(copy / "system.json"))
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr
    checked = refusal("validate", str(copy.parent / "input.yaml"), "--workdir", str(copy / "system.json"))
    assert checked.returncode == 2 and "is a file, not a directory" in checked.stderr


@pytest.mark.parametrize("where", ["header", "middle"])
def test_corrupt_log_bytes_are_a_clear_refusal(copy, where):
    log = copy / "events.sqlite"
    data = bytearray(log.read_bytes())
    start = 0 if where == "header" else len(data) // 2
    data[start:start + 4096] = b"\xde\xad" * 2048
    log.write_bytes(bytes(data))
    result = rerun(copy)
    assert result.returncode == 2, result.stderr
    assert "events.sqlite" in result.stderr and "internal error" not in result.stderr


def test_a_run_that_would_go_on_without_its_potential_is_refused(started):
    with EventStore(started / "events.sqlite") as store:
        store.append("model.trained", {"generation": 0, "potential": "potentials/gen_000.yaml",
                                       "active_set": "potentials/gen_000.asi", "metrics": {}, "n_train": 8,
                                       "n_validation": 1})
    (started / "potentials" / "gen_000.asi").write_text("")  # the potential itself was deleted
    before = fingerprint(started)
    result = rerun(started)
    assert result.returncode == 2 and "lacks potentials/gen_000.yaml" in result.stderr
    assert "gen_000.asi" not in result.stderr
    assert fingerprint(started) == before


def test_finished_labels_are_carried_into_a_new_project_with_their_provenance(finished, tmp_path):
    source = finished.parent / "emt_al"
    with EventStore.open_existing(source / "events.sqlite") as store:
        source_labels = {t.key for t in fold(store.events()).labels_done()}
    (tmp_path / "input.yaml").write_text(INPUT.replace("seed: 3", "seed: 4"))
    result = mlip_auto("run", str(tmp_path / "input.yaml"), "--site", "threads", "--from-labels", str(source))
    assert result.returncode == 0, result.stderr
    with EventStore.open_existing(tmp_path / "emt_al" / "events.sqlite") as store:
        events = store.events()
        state = fold(events)
    imported = [p for p in (e.payload for e in events if e.kind == "task.submitted") if p["inputs"]]
    assert {p["key"] for p in imported} == source_labels
    assert all(p["inputs"]["imported_from"].startswith(f"{source}:") for p in imported)
    submitted = [e.payload for e in events if e.kind == "task.submitted"]
    assert all(Counter(p["key"] for p in submitted)[key] == 1 for key in source_labels)
    imported_uuids = {p["label"] for p in imported}  # the DFT stage found them done, computed none again:
    assert [p for p in submitted if p["label"] in imported_uuids] == imported
    assert source_labels <= {t.key for t in state.labels_done(0)}
    db = DatabaseManager(tmp_path / "emt_al" / "structures.db")
    rows = db.structures(config_type="imported")
    assert len(rows) == len(source_labels)
    assert all(db.label_of(row.uuid)["imported_from"].startswith(str(source)) for row in rows)


def test_labels_of_other_physics_or_into_a_started_project_are_refused(finished, copy, tmp_path):
    source = finished.parent / "emt_al"
    other = tmp_path / "other"
    other.mkdir()
    (other / "input.yaml").write_text(INPUT.replace("{engine: emt}", "{engine: emt, min_distance_factor: 0.4}"))
    result = refusal("run", str(other / "input.yaml"), "--site", "threads", "--from-labels", str(source))
    assert result.returncode == 2 and "dft.min_distance_factor differ" in result.stderr
    assert sorted(p.name for p in other.iterdir()) == ["input.yaml"]
    started = refusal("run", str(copy.parent / "input.yaml"), "--site", "threads", "--from-labels",
                      str(source))
    assert started.returncode == 2 and "new project" in started.stderr
