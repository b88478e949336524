"""The read-only commands name a damaged event log, a closed stdout ends quietly, counts are never negative.

One EMT project is run to DONE on the thread-pool site; each test damages its own copy as a user did (the
file truncated by a few bytes, a row appended by hand with a wrong hash) and checks that `status` and
`events list|show|replay` still show what they can, but say first on stderr where the log is damaged,
exit 4, carry `log_intact`/`first_bad_seq` in their JSON, and leave every file of the project as it was.
"""

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import ase.io
import pytest
import test_project_safety as safety
from ase.build import bulk
from installed import MLIP_AUTO
from test_project_safety import fingerprint, refusal, tamper

from autopipe.cli import CLOSED_PIPE, DAMAGED_LOG
from autopipe.events import EventStore

READERS = {  # command line after the project -> the JSON output's integrity fields, if it prints JSON
    "status": ["status", "{project}", "--html", "{html}"],
    "status --json": ["status", "{project}", "--json", "--html", "{html}"],
    "events list": ["events", "list", "{project}"],
    "events list --json": ["events", "list", "{project}", "--json"],
    "events show": ["events", "show", "{project}", "3"],
    "events replay": ["events", "replay", "{project}"],
    "events replay --json": ["events", "replay", "{project}", "--json"],
}
PRINTS_JSON = {"status --json", "events list --json", "events show", "events replay --json"}


finished = safety.finished  # the input.yaml of one EMT project run to DONE (once for this module)
copy = safety.copy  # a private copy of that project, for a test to damage


@pytest.fixture
def project(finished) -> Path:
    """The finished project itself, for the tests that only read it."""
    return finished.parent / "emt_al"


def reader(name: str, project: Path) -> subprocess.CompletedProcess:
    html = project.parent / "status.html"  # outside the project: `status` writes nothing into it
    return refusal(*(arg.format(project=project, html=html) for arg in READERS[name]))


def query(project: Path, sql: str) -> list[tuple]:
    """`sql` on the log as SQLite itself reads it, read-only."""
    with sqlite3.connect(f"file:{project / 'events.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def last_row(project: Path) -> tuple[int, str, str]:
    return query(project, "select seq, time, hash from events order by seq desc limit 1")[0]


def truncate(project: Path, n_bytes: int) -> None:
    """Cut `n_bytes` off the end of the log file, as `truncate -s -N` does."""
    log = project / "events.sqlite"
    os.truncate(log, log.stat().st_size - n_bytes)


def append_by_hand(project: Path, payload: str = "{}") -> int:
    """An INSERT of a next event with a made-up hash (the head not updated); returns its seq."""
    seq, time, digest = last_row(project)
    tamper(project, "insert into events values "
                    f"({seq + 1}, '{time}', 'state.entered', '{payload}', '{digest}', '{'0' * 64}')")
    return seq + 1


def verified_bad_seq(project: Path, tmp_path: Path) -> int:
    """Where `events verify` finds the damage, asked of a copy (it opens the log for writing)."""
    shutil.copy(project / "events.sqlite", tmp_path / "verify.sqlite")
    with EventStore.open_existing(tmp_path / "verify.sqlite") as store:
        report = store.verify()
    assert not report.ok
    return report.first_bad_seq


@pytest.fixture(params=["truncated by 100 bytes", "row appended by hand"])
def damaged(request, copy, tmp_path) -> tuple[Path, int]:
    """A damaged copy of the project and the seq at which `events verify` reports the damage."""
    if request.param == "row appended by hand":
        return copy, append_by_hand(copy)
    n_events = last_row(copy)[0]
    truncate(copy, 100)
    assert query(copy, "select count(*) from events") == [(n_events,)]  # SQLite still reads every row
    bad = verified_bad_seq(copy, tmp_path)
    assert 1 < bad <= n_events  # the cut hit event rows on the last page, not only free space
    return copy, bad


@pytest.mark.parametrize("name", READERS)
def test_each_reader_shows_a_damaged_log_but_names_the_damage_first(damaged, name):
    project, bad = damaged
    before = fingerprint(project)
    result = reader(name, project)
    assert result.returncode == DAMAGED_LOG == 4, result.stderr
    first_line = result.stderr.splitlines()[0]
    assert first_line == f"event log damaged at seq {bad} (see `mlip-auto events verify {project}`)"
    assert "Traceback" not in result.stderr and "Error" not in result.stderr
    if name in PRINTS_JSON:
        shown = json.loads(result.stdout)
        assert (shown["log_intact"], shown["first_bad_seq"]) == (False, bad)
    if name == "status":
        assert f"event log damaged at seq {bad}" in result.stdout  # in the key figures, too
    if name.startswith("status"):
        page = (project.parent / "status.html").read_text()
        assert f'<p class="damaged" role="alert">event log damaged at seq {bad}' in page
    assert fingerprint(project) == before


def test_what_is_shown_of_a_damaged_log(copy):
    """Listing shows every readable row, the bad one included; the state is that before the damage."""
    bad = append_by_hand(copy)
    listed = json.loads(reader("events list --json", copy).stdout)
    assert [e["seq"] for e in listed["events"]] == list(range(1, bad + 1))
    replayed = json.loads(reader("events replay --json", copy).stdout)
    assert (replayed["seq"], replayed["state"], replayed["finished"]) == (bad - 1, "DONE", True)
    figures = json.loads(reader("status --json", copy).stdout)
    assert figures["summary"]["events"] == bad - 1


@pytest.mark.parametrize("payload", ["not JSON", "5"])
def test_a_hand_made_row_without_a_json_object_is_left_out_of_the_listing(copy, payload):
    bad = append_by_hand(copy, payload)
    for name in ("events list", "events list --json", "status"):
        result = reader(name, copy)
        assert result.returncode == 4 and f"damaged at seq {bad}" in result.stderr, result.stderr
    listed = json.loads(reader("events list --json", copy).stdout)["events"]
    assert listed[-1]["seq"] == bad - 1


def test_an_intact_log_reads_with_exit_0_and_says_so(copy):
    before = fingerprint(copy)
    for name in READERS:
        result = reader(name, copy)
        assert result.returncode == 0, (name, result.stderr)
        assert result.stderr == ""
        if name in PRINTS_JSON:
            shown = json.loads(result.stdout)
            assert (shown["log_intact"], shown["first_bad_seq"]) == (True, None), name
    assert 'class="damaged"' not in (copy.parent / "status.html").read_text()
    assert fingerprint(copy) == before


def test_a_log_truncated_by_a_page_cannot_be_read_and_is_refused(copy):
    """SQLite cannot read a log cut by a whole page: no command pretends to show it (exit 2, a paragraph)."""
    truncate(copy, 2 * 4096)
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        query(copy, "select * from events")
    before = fingerprint_bytes(copy)
    for name in READERS:
        result = reader(name, copy)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.startswith("Error: ") and "events.sqlite" in result.stderr, name
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert fingerprint_bytes(copy) == before


def fingerprint_bytes(project: Path) -> dict[str, bytes]:
    """Every file's bytes (`fingerprint` reads SQLite files by their rows, which this log no longer has)."""
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*")) if p.is_file()}


def test_the_installed_command_warns_in_red_and_exits_4(copy):
    bad = append_by_hand(copy)
    result = subprocess.run([MLIP_AUTO, "events", "list", str(copy), "--last", "1"], capture_output=True,
                            text=True, check=False, env={**os.environ, "FORCE_COLOR": "1"})
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"\x1b[1;31mevent log damaged at seq {bad} ")  # bold red
    assert f"{bad}" in result.stdout


def shell_env() -> dict[str, str]:
    """The environment with the buffering a user's shell gives (PYTHONUNBUFFERED, which CI may set, would
    hide the output that waits in Python's buffer for the flush at exit)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize(
    "args", [["list"], ["list", "--json"], ["show", "3"]], ids=["rich table", "long JSON", "short JSON"]
)
def test_a_closed_stdout_ends_quietly(project, args):
    """`mlip-auto events list P | head`: the reader is gone before the first write (so the pipe is surely
    closed when the command writes); no message, no traceback, exit 141 as for SIGPIPE. Rich writes at
    once, a long print() fills Python's buffer, a short one waits in it for the flush at exit."""
    process = subprocess.Popen([MLIP_AUTO, "events", args[0], str(project), *args[1:]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=shell_env())
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == CLOSED_PIPE == 141, stderr
    assert stderr == "", stderr  # no "Error", "Traceback" or "Exception ignored ... BrokenPipeError"


def test_a_closed_stdout_in_a_shell_pipeline(project):
    """The same as a user types it, under pipefail: `head` sees the first line, the status is 141 or,
    where the whole listing was written before `head` exited, 0."""
    line = f"set -o pipefail; '{MLIP_AUTO}' events list '{project}' | head -1"
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=False, env=shell_env())
    assert result.returncode in (0, CLOSED_PIPE) and "events" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ["events", "list", "{p}", "--last", "-2"],
        ["events", "list", "{p}", "--last", "0"],
        ["events", "list", "{p}", "--since", "-2"],
        ["events", "show", "{p}", "--", "-1"],
        ["events", "show", "{p}", "0"],
        ["events", "replay", "{p}", "--until", "-1"],
        ["events", "replay", "{p}", "--until", "0"],
        ["assess", "{p}", "--generation", "-1"],
        ["md", "{p}", "--structure", "x.extxyz", "--temperature", "300", "--steps", "-5"],
        ["md", "{p}", "--structure", "x.extxyz", "--temperature", "300", "--steps", "5", "--seed", "-1"],
    ],
    ids=lambda args: " ".join(a for a in args if a != "{p}"),
)
def test_negative_counts_and_seqs_are_refused(project, args):
    before = fingerprint(project)
    result = refusal(*(a.format(p=project) for a in args))
    assert result.returncode == 2, result.stdout
    assert "Invalid value" in result.stderr or f"{args[-2]} {args[-1]}" in result.stderr.replace("'", "")
    assert fingerprint(project) == before


def test_md_refuses_a_damaged_log_before_writing_anything(damaged, tmp_path):
    """`md` writes into the project (md/run_NNN) with the potential the log names: never from a damaged log."""
    project, bad = damaged
    structure = tmp_path / "start.extxyz"
    ase.io.write(structure, bulk("Al", "fcc", a=4.05, cubic=True))
    before = fingerprint(project)
    result = refusal("md", str(project), "--structure", str(structure), "--temperature", "300", "--steps", "5")
    assert result.returncode == 2, result.stderr
    assert f"damaged at seq {bad}" in result.stderr and "events verify" in result.stderr
    assert fingerprint(project) == before and not (project / "md").exists()
