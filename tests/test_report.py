"""`mlip-auto status` and the audit commands on a real EMT project: the figures against what the project
holds, the HTML page in headless Chromium with networking disabled, status while a run writes, and
`events replay` against `fold` at every seq."""

import io
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import ase.db
import pytest
from ase.build import bulk
from ase.io import write
from installed import MLIP_AUTO, mlip_auto
from rich.console import Console
from typer.testing import CliRunner

from autopipe.cli import app
from autopipe.errors import UsageError
from autopipe.events import EventStore, event_hash, fold
from autopipe.logs import LOGGER
from autopipe.progress import show_progress
from autopipe.replay import state_summary
from autopipe.report import build_report

ARTIFACTS = Path(os.environ.get("AUTOPIPE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))

INPUT = """
project: {{name: emt_al}}
elements: [Al]
structures:
  files: [{start}]
  generator: {{prototype: fcc, cubic: true, rattled: 6, strained: 2}}
dft: {{engine: emt, max_failed_fraction: 0.5}}
training: {{mode: linear, accuracy: fast, functions_per_element: 16}}
exploration: {{temperatures: [600], steps: 100, check_interval: 10, gamma_select: 2.0, gamma_halt: 15.0}}
selection: {{max_per_generation: 2}}
loop: {{max_generations: 2, dft_budget: 30, seed: 3}}
assess: {assess}
"""
ASSESS = (
    "{properties: [eos, vacancy], max_rounds: 0, vacancy_supercell: [2, 1, 1]}"  # a real verdict, quickly
)
CHARTS = ["rmse", "assessment", "composition", "elements", "gamma", "timeline"]


def write_input(folder: Path, assess: str = ASSESS) -> Path:
    """An EMT input whose one overlapping structure fails its label (a named failure for the report)."""
    overlapping = bulk("Al", cubic=True)
    overlapping.positions[1] = overlapping.positions[0] + [0.3, 0.0, 0.0]
    write(folder / "start.extxyz", [overlapping])
    path = folder / "input.yaml"
    path.write_text(INPUT.format(start=folder / "start.extxyz", assess=assess))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One EMT project run to DONE on the thread-pool site; the run's stderr is kept beside it."""
    input_path = write_input(tmp_path_factory.mktemp("report"))
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode in (0, 3), result.stderr  # 3: DONE, the potential assessed as not usable
    (input_path.parent / "run.stderr").write_text(result.stderr)
    return input_path.parent / "emt_al"


def all_events(project: Path) -> list:
    """The log read through the validating store, independently of the report's read-only reader."""
    with EventStore.open_existing(project / "events.sqlite") as store:
        return store.events()


def render_in_chromium(page: Path, screenshot: Path) -> tuple[str, str]:
    """The DOM after scripts ran, and the browser's log, from headless Chromium without network access:
    in a network namespace of its own where the system allows one, and with every host unresolvable."""
    chromium = shutil.which("chromium")
    isolate = (
        ["unshare", "-n"] if subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0 else []
    )
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=15000",
        "--window-size=1200,3600",
    ]
    dom = subprocess.run(
        [*isolate, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    subprocess.run(
        [*isolate, *flags, f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dom.stdout, dom.stderr


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_the_report_is_self_contained_and_every_chart_renders_offline(project, tmp_path):
    result = mlip_auto("status", str(project), "--html", str(tmp_path / "status.html"))
    assert result.returncode == 0, result.stderr
    page = tmp_path / "status.html"
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text  # nothing to fetch
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dom, log = render_in_chromium(page, ARTIFACTS / "status-report.png")
    assert 'data-charts="rendered"' in dom and 'data-errors=""' in dom
    page_console = [line for line in log.splitlines() if ":CONSOLE" in line and page.as_uri() in line]
    assert page_console == []  # the page logged nothing: no error, no warning
    for chart in CHARTS:
        block = dom.split(f'id="{chart}"', 1)[1].split("</section>", 1)[0]
        assert "<svg" in block and 'class="marks"' in block, f"chart {chart} did not render"
    verdict = fold(all_events(project)).assessments[-1]
    assert verdict["reason"] in dom and "too_close" in dom  # the verdict, the failure's named kind
    assert (ARTIFACTS / "status-report.png").stat().st_size > 10_000


def test_status_figures_agree_with_the_project(project, tmp_path):
    result = mlip_auto("status", str(project), "--json", "--html", str(tmp_path / "s.html"))
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (tmp_path / "s.html").is_file() and figures["html"] == str(tmp_path / "s.html")
    state = fold(all_events(project))
    summary = figures["summary"]
    assert (summary["state"], summary["stop_reason"]) == ("DONE", state.reason)
    assert summary["labels"] == {"done": len(state.labels_done()), "in_flight": 0, "failed": 1}
    with ase.db.connect(project / "structures.db") as db:
        rows = list(db.select())
    assert sum(c["structures"] for c in figures["composition"]) == len(rows)
    assert sum(c["labelled"] for c in figures["composition"]) == summary["labels"]["done"]
    assert sum(e["atoms"] for e in figures["elements"]) == sum(r.natoms for r in rows if r.get("labelled"))
    # which kinds exist depends on the run (the split follows the uuids, which follow the input's paths)
    assert {c["config_type"] for c in figures["composition"]} == {r.config_type for r in rows} >= {"initial"}
    for row, (generation, model) in zip(figures["generations"], sorted(state.models.items()), strict=True):
        assert row["force_rmse_mev_a"] == model["metrics"]["validation"]["force_rmse_mev_a"]
        assert row["generation"] == generation
    gamma_rows = sum(
        len(p.read_text().splitlines()) - 1 for p in project.glob("generations/*/explore/*/md/gamma.csv")
    )
    assert sum(h["frames"] for h in figures["gamma"]["histogram"]) == gamma_rows > 0
    assert figures["gamma"]["thresholds"] == {"select": 2.0, "halt": 15.0}
    assert [f["failure_kind"] for f in figures["failures"]] == ["too_close"]
    assert set(summary["stage_time_s"]) == {"INIT", "DFT", "TRAIN", "EXPLORE", "SELECT", "ASSESS"}
    assert summary["dft_wall_time_s"] > 0
    assert [(a["generation"], len(a["rows"])) for a in figures["assessments"]] == [
        (a["generation"], len(a["rows"])) for a in state.assessments
    ]
    assert [r["dft"] for r in figures["assessments"][-1]["rows"]] == [
        r["dft"] for r in state.assessments[-1]["rows"]
    ]
    assert summary["assessment"].startswith(f"generation {state.assessments[-1]['generation']}: ")


@pytest.mark.parametrize("case", ["missing", "no log", "empty log", "not sqlite", "truncated"])
def test_status_of_a_project_that_cannot_be_read_exits_2_with_a_message(project, tmp_path, case):
    target = tmp_path / "p"
    if case != "missing":
        target.mkdir()
    if case == "empty log":
        EventStore(target / "events.sqlite").close()
    if case == "not sqlite":
        (target / "events.sqlite").write_text("this is not a database\n" * 100)
    if case == "truncated":
        (target / "events.sqlite").write_bytes((project / "events.sqlite").read_bytes()[:2000])
    result = CliRunner().invoke(app, ["status", str(target)])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output and "Traceback" not in result.output
    assert str(target) in result.output.replace("\n", "") or "events.sqlite" in result.output
    assert not (target / "report").exists()


def test_status_to_a_place_it_cannot_write_exits_2(project, tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["status", str(project), "--html", str(tmp_path / "file" / "s.html")])
    assert result.exit_code == 2 and "file is not a directory" in result.output


@pytest.mark.slow
def test_status_while_the_run_writes(tmp_path):
    """Reports taken in a loop while a run appends: none fails, each is a consistent snapshot."""
    input_path = write_input(tmp_path, assess="{enabled: false}")
    project = tmp_path / "emt_al"
    run = subprocess.Popen(
        [MLIP_AUTO, "run", str(input_path), "--site", "threads"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    snapshots = []
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        try:
            figures = build_report(project)
        except (
            UsageError
        ) as err:  # the log does not exist or holds no event yet: only before the first report
            assert not snapshots, err
        else:
            summary = figures["summary"]
            assert figures["log_intact"], figures["first_bad_seq"]  # a snapshot mid-append is never "damaged"
            # data before events: every label the log counts is already in structures.db
            assert summary["labels"]["done"] <= sum(c["labelled"] for c in figures["composition"])
            snapshots.append((summary["seq"], summary["state"]))
        time.sleep(0.5)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    running = [s for s in snapshots if s[1] not in ("DONE", "FAILED")]
    assert len(running) >= 3, snapshots
    assert [seq for seq, _ in snapshots] == sorted(seq for seq, _ in snapshots)
    cli = mlip_auto("status", str(project))
    assert cli.returncode == 0 and "DONE" in cli.stdout


def test_events_replay_until_equals_fold_at_every_seq(project):
    events = all_events(project)
    runner = CliRunner()
    for seq in range(1, len(events) + 1):
        result = runner.invoke(app, ["events", "replay", str(project), "--until", str(seq), "--json"])
        assert result.exit_code == 0, result.output
        expected = state_summary(fold(events[:seq]))
        assert json.loads(result.output) == {**expected, "log_intact": True, "first_bad_seq": None}
        if events[seq - 1].kind == "state.entered":
            assert expected["state"] == events[seq - 1].payload["state"]
    past = runner.invoke(app, ["events", "replay", str(project), "--until", str(len(events) + 1)])
    assert past.exit_code == 2 and "past it" in past.output


def test_events_list_since_and_json_and_show(project):
    runner = CliRunner()
    events = all_events(project)
    listed = runner.invoke(app, ["events", "list", str(project), "--since", "10", "--json"])
    assert json.loads(listed.output)["log_intact"] is True and listed.exit_code == 0
    assert [e["seq"] for e in json.loads(listed.output)["events"]] == [e.seq for e in events[10:]]
    from_time = runner.invoke(app, ["events", "list", str(project), "--since", events[20].time, "--json"])
    assert json.loads(from_time.output)["events"][0]["seq"] == events[20].seq
    failed = runner.invoke(app, ["events", "list", str(project), "--kind", "task.failed", "--json"])
    assert [e["payload"]["failure_kind"] for e in json.loads(failed.output)["events"]] == ["too_close"]
    shown = runner.invoke(app, ["events", "show", str(project), "5"])
    intact = {"log_intact": True, "first_bad_seq": None}
    assert json.loads(shown.output) == {**events[4].model_dump(), **intact}
    missing = runner.invoke(app, ["events", "show", str(project), "9999"])
    assert missing.exit_code == 2
    bad = runner.invoke(app, ["events", "list", str(project), "--since", "last tuesday"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_a_run_outside_a_terminal_prints_one_line_per_state_change(project):
    """CI logs: the state lines, the failed label's warning, nothing else (no bars, no info chatter)."""
    printed = (project.parent / "run.stderr").read_text().splitlines()
    entered = [e.payload for e in all_events(project) if e.kind == "state.entered"]
    expected = [
        f"-> {p['state']} (generation {p['generation']})" + (f": {p['reason']}" if p["reason"] else "")
        for p in entered
    ]
    assert [line for line in printed if line.startswith("-> ")] == expected
    assert not any("INFO" in line or "━" in line for line in printed)
    assert any("WARNING" in line for line in printed)  # the overlapping structure's label failed


def test_progress_bars_count_done_running_and_failed_tasks(project):
    """The handler fed the run's own events, as the workflow logs them, on a terminal console."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=120)
    events = all_events(project)
    to_train = next(
        i for i, e in enumerate(events) if e.kind == "state.entered" and e.payload["state"] == "TRAIN"
    )
    with show_progress(console, verbose=False) as handler:
        for event in events[:to_train]:
            LOGGER.debug("event %d", event.seq, extra={"event": event})
        state = fold(events[:to_train])
        done, failed = len(state.labels_done(0)), len(state.labels_failed(0))
        handler.progress.refresh()
        bar = f"DFT labels, generation 0 {'━' * 40} {done + failed}/{done + failed}"
        assert f"{bar} {done} done, 0 running, {failed} failed" in screen.getvalue()
        for event in events[to_train : to_train + 2]:  # the state change, then the training task submitted
            LOGGER.debug("event %d", event.seq, extra={"event": event})
        assert handler.batches[("dft", 0)].bar is None  # a finished batch gives way to the state line
        assert handler.batches[("train", 0)].running == 1
    assert "-> TRAIN (generation 0): " in screen.getvalue()
    assert handler not in LOGGER.handlers


def test_events_of_a_kind_this_version_does_not_know_are_skipped(project, tmp_path):
    """A log extended by a newer mlip-autopipe (a valid chain, an unknown kind) still reports and replays."""
    copy = tmp_path / "emt_al"
    shutil.copytree(project, copy)
    last = all_events(copy)[-1]
    payload, seq = {"generation": 1, "note": "from the future"}, last.seq + 1
    digest = event_hash(seq, last.time, "walker.moved", payload, last.hash)
    with sqlite3.connect(copy / "events.sqlite") as conn:
        row = (seq, last.time, "walker.moved", json.dumps(payload), last.hash, digest)
        conn.execute("insert into events values (?, ?, ?, ?, ?, ?)", row)
        conn.execute("update head set last_seq = ?, last_hash = ?", (seq, digest))
    runner = CliRunner()
    status = runner.invoke(app, ["status", str(copy), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["summary"]["events"] == seq
    replayed = runner.invoke(app, ["events", "replay", str(copy), "--json"])
    assert json.loads(replayed.output)["state"] == fold(all_events(project)).state
    shown = runner.invoke(app, ["events", "show", str(copy), str(seq)])
    assert json.loads(shown.output)["payload"] == payload
