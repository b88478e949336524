"""Faults of the machine (a full disk, a read-only project, a binary input) end with one paragraph naming the
file, and a run stopped by a full disk resumes, once space is freed, to the result of an undisturbed run.

The disk is a real tmpfs of 3 MB, mounted by the test (root; CI runs as root, so there the tests fail
instead of skipping when mounting is impossible). tests/fill_disk/sitecustomize.py fills it the moment the
installed `mlip-auto run` commits a chosen event: the stage, or the first task of a kind, at which the disk
fills is the same on every run.
"""

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from installed import MLIP_AUTO
from test_project_safety import INPUT, refusal

from autopipe.errors import EnvironmentFault
from autopipe.events import EventStore, fold, run_lock
from autopipe.logs import LOGGER, log_to_file

FILL_DISK = Path(__file__).parent / "fill_disk"
PROJECT = "emt_al"  # project.name of INPUT
NOT_IN_STDERR = ("Traceback", "Logging error", "Unexpected internal error")

#: (event kind, state or task kind) after whose commit the disk fills: each stage as it is entered, and the
#: first DFT and MD task as it is submitted (then the task's own directory is what cannot be written).
FILL_POINTS = [
    ("state.entered", "DFT"),
    ("task.submitted", "dft"),
    *[pytest.param(kind, what, marks=pytest.mark.slow) for kind, what in [
        ("state.entered", "INIT"), ("state.entered", "TRAIN"), ("state.entered", "EXPLORE"),
        ("state.entered", "SELECT"), ("task.submitted", "explore"),
    ]],
]


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@contextmanager
def small_disk(where: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the duration of the block."""
    where.mkdir()
    mounted = shutil.which("mount") and mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    if mounted is None or mounted.returncode:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip() if mounted else 'no mount command'}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI runs as root and must run these tests)")
        pytest.skip(f"{reason}; these tests need root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def run(input_file: Path, fill_at: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed `mlip-auto run` of `input_file`; with `fill_at`, the disk fills there (with the file
    `ballast` beside the input)."""
    env = dict(os.environ)
    if fill_at:
        env |= {"PYTHONPATH": os.pathsep.join(filter(None, [str(FILL_DISK), env.get("PYTHONPATH")])),
                "AUTOPIPE_FILL_AT": " ".join(fill_at), "AUTOPIPE_BALLAST": str(input_file.parent / "ballast")}
    return subprocess.run([MLIP_AUTO, "run", str(input_file), "--site", "threads"], env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def paragraph(result: subprocess.CompletedProcess) -> str:
    """The error paragraph, asserted to be the one last line of stderr and the only one of its kind."""
    for text in NOT_IN_STDERR:
        assert text not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and result.stderr.count("Error: ") == 1, result.stderr
    return last


def outcome(project: Path) -> dict:
    """What an EMT run determines: its labels, its finished tasks, its potentials, how it ended."""
    with EventStore.open_existing(project / "events.sqlite") as store:
        assert store.verify().ok
        state = fold(store.events())
    return {
        "labels": sorted(record.key for record in state.labels_done()),
        "failed": len(state.labels_failed()),
        "tasks": sorted(key for key, task in state.tasks.items() if task.status == "completed"),
        "n_train": {generation: model["n_train"] for generation, model in state.models.items()},
        "potentials": sorted(path.name for path in (project / "potentials").iterdir()),
        "end": (state.outcome, state.reason),
    }


def file_bytes(project: Path) -> dict[str, bytes]:
    """Every file of `project` byte for byte (SQLite cannot open a WAL log on a read-only disk to dump it)."""
    return {str(path.relative_to(project)): path.read_bytes() for path in project.rglob("*")
            if path.is_file()}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> Path:
    """The folder of the EMT project run to DONE on a disk with room."""
    folder = tmp_path_factory.mktemp("undisturbed")
    (folder / "input.yaml").write_text(INPUT)
    result = run(folder / "input.yaml")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize(("event", "what"), FILL_POINTS)
def test_a_full_disk_stops_with_one_paragraph_and_the_rerun_ends_as_an_undisturbed_run(
    undisturbed, tmp_path, event, what
):
    with small_disk(tmp_path / "disk") as disk:
        (disk / "input.yaml").write_text(INPUT)
        stopped = run(disk / "input.yaml", fill_at=(event, what))
        assert stopped.returncode == 1, stopped.stderr
        message = paragraph(stopped)
        assert message.startswith(f"Error: Cannot write {disk / PROJECT}"), message
        assert "Nothing already finished is lost" in message and "run the same command again" in message
        assert "Free space" in message, message

        (disk / "ballast").unlink()
        resumed = run(disk / "input.yaml")
        assert resumed.returncode == 0, resumed.stderr
        assert outcome(disk / PROJECT) == outcome(undisturbed / PROJECT)


def test_a_read_only_project_is_one_paragraph_naming_it_and_nothing_is_written(undisturbed, tmp_path):
    with small_disk(tmp_path / "disk", size="8m") as disk:
        shutil.copy(undisturbed / "input.yaml", disk / "input.yaml")
        shutil.copytree(undisturbed / PROJECT, disk / PROJECT)
        (disk / "new.yaml").write_text(INPUT.replace(PROJECT, "emt_new"))
        before = file_bytes(disk / PROJECT)
        assert mount("-o", "remount,ro", str(disk)).returncode == 0

        started, new = run(disk / "input.yaml"), run(disk / "new.yaml")
        for result, written, directory in ((started, disk / PROJECT / "events.sqlite", disk / PROJECT),
                                           (new, disk / "emt_new", disk)):
            assert result.returncode == 1, result.stderr
            message = paragraph(result)
            assert message.startswith(f"Error: Cannot write {written}: Read-only file system"), message
            assert f"Make {directory} writable" in message, message
        assert file_bytes(disk / PROJECT) == before
        assert not (disk / "emt_new").exists()

        report = tmp_path / "report.html"  # the read-only commands still read it
        project = str(disk / PROJECT)
        for command in (["events", "list", project], ["events", "replay", project], ["events", "show", project, "1"],
                        ["status", project, "--html", str(report)]):
            shown = refusal(*command)
            assert shown.returncode == 0 and not shown.stderr, (command, shown.stderr)
        assert report.is_file() and file_bytes(disk / PROJECT) == before


def test_a_run_lock_that_cannot_be_written_names_the_file(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        assert mount("-o", "remount,ro", str(disk)).returncode == 0
        written = f"Cannot write {disk / 'run.lock'}: Read-only file system"
        with pytest.raises(EnvironmentFault, match=written), run_lock(disk):
            pass


def test_a_file_log_on_a_full_disk_warns_once_and_never_raises(tmp_path, capsys):
    records: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = records.append
    with small_disk(tmp_path / "disk") as disk:
        log_to_file(disk / "logs" / "autopipe.log")
        LOGGER.addHandler(catcher)
        try:
            (disk / "ballast").write_bytes(b"\0" * 4 * 2**20)
        except OSError:
            pass
        try:
            for n in range(50):
                LOGGER.info("line %d %s", n, "x" * 200)
        finally:
            LOGGER.removeHandler(catcher)
            for handler in [h for h in LOGGER.handlers if isinstance(h, logging.FileHandler)]:
                LOGGER.removeHandler(handler)
                handler.close()
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "autopipe.log (No space left on device)" in warnings[0]
    assert "Logging error" not in capsys.readouterr().err


BINARY = {"NUL byte": b"project: {name: demo}\x00\nelements: [Al]\n", "binary": bytes(range(128, 256)) * 4}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("content", BINARY, ids=list(BINARY))
@pytest.mark.parametrize("which", ["input", "site"])
def test_a_binary_input_or_site_file_is_a_usage_paragraph_naming_it(tmp_path, command, content, which):
    (tmp_path / "input.yaml").write_text(INPUT)
    bad = tmp_path / f"{which}-bad.yaml"
    bad.write_bytes(BINARY[content])
    input_file, site = (bad, "threads") if which == "input" else (tmp_path / "input.yaml", str(bad))
    result = refusal(command, str(input_file), "--site", site)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Error: {bad} "), result.stderr
    assert "is it a binary file?" in result.stderr, result.stderr
    assert "Unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["input.yaml", bad.name])
