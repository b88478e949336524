"""No project is poisoned: a damaged or deleted task result means "run that task again", never a crash, and
labels a project cannot fit are refused before anything is written.

One small EMT project (assessment on, with the MD check) is run to DONE on the thread-pool site. Each fault
test takes a private copy, cuts its log back to where a run killed after one stage would have left it,
damages what that stage's tasks left behind, and resumes: the run ends as the original did, and the task
whose files a later stage needed ran again, recorded as `task.retried` with the file named in the reason.
"""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from installed import mlip_auto
from test_project_safety import INPUT as SAFETY_INPUT
from test_project_safety import refusal

from autopipe.config import load_config
from autopipe.events import EventStore, fold
from autopipe.import_labels import read_labels

#: test_project_safety's project, with the assessment on (E(V) and the MD check, whose snapshots get DFT).
INPUT = SAFETY_INPUT.replace("assess: {enabled: false}\n", """assess:
  properties: [eos, md_forces]
  max_rounds: 0
  md: {supercell: [2, 2, 2], steps: 60, snapshots: 1, temperature: 300}
""")
DAMAGED = "result file missing or damaged: "


def run(input_path: Path, *args: str):
    return mlip_auto("run", str(input_path), "--site", "threads", *args)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, int]:
    """The EMT project run to DONE and the exit code of that run."""
    folder = tmp_path_factory.mktemp("done")
    (folder / "input.yaml").write_text(INPUT)
    result = run(folder / "input.yaml")
    assert result.returncode in (0, 3), result.stderr
    return folder / "emt_al", result.returncode


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    """A private copy of the finished project (its input.yaml next to it)."""
    shutil.copy(finished[0].parent / "input.yaml", tmp_path / "input.yaml")
    return Path(shutil.copytree(finished[0], tmp_path / "emt_al"))


def events(project: Path) -> list:
    with EventStore.open_existing(project / "events.sqlite") as store:
        return store.events()


def outcome(project: Path) -> dict:
    """What a run ends with: its labels, its final verdict and how it finished."""
    state = fold(events(project))
    verdict = [a for a in state.assessments if a["source"] == "run"][-1]
    return {"labels": sorted(t.key for t in state.labels_done()), "outcome": state.outcome,
            "verdict": {k: verdict[k] for k in ("usable", "reason", "rows", "reference_volume")}}


def stop_before(project: Path, kind: str, payload: dict) -> None:
    """Cut the log back to a run killed just before the first event `kind` whose payload holds `payload`."""
    seq = next(e.seq for e in events(project)
               if e.kind == kind and all(e.payload.get(k) == v for k, v in payload.items()))
    with sqlite3.connect(project / "events.sqlite") as conn:
        for (name,) in conn.execute("select name from sqlite_master where type='trigger'").fetchall():
            conn.execute(f"drop trigger {name}")  # the next run's EventStore creates them again
        conn.execute("delete from events where seq >= ?", (seq,))
        (last,) = conn.execute("select hash from events where seq = ?", (seq - 1,)).fetchone()
        conn.execute("update head set last_seq = ?, last_hash = ? where id = 1", (seq - 1, last))


def task_dirs(project: Path, kind: str) -> list[Path]:
    return sorted((project / "generations" / "gen_000" / kind).iterdir())


def truncate(path: Path) -> None:
    """What a full disk or a kill mid-write leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] or b"{")


def first_reference(project: Path) -> Path:
    return min((project / "assessment" / "references").iterdir()) / "result.json"


def explore_file(name: str):
    """Damage the file `name` of a walker that wrote a non-empty one, and delete its result.json."""
    def damage(project: Path) -> None:
        walker = next(d for d in task_dirs(project, "explore") if (d / "md" / name).is_file()
                      and (d / "md" / name).stat().st_size)
        truncate(walker / "md" / name)
        (walker / "result.json").unlink()
    return damage


#: Per case: the task kind damaged, the event before which the run is cut off (the stage that reads what the
#: kind's tasks left behind runs next), the damage, and whether that stage needs the damaged file (the task
#: runs again) or not (the run goes on without it).
FAULTS = {
    "init": ("init", ("state.entered", {"state": "DFT"}),
             lambda p: truncate(task_dirs(p, "init")[0] / "result.json"), False),
    "dft": ("dft", ("state.entered", {"state": "TRAIN"}),
            lambda p: shutil.rmtree(p / "generations" / "gen_000" / "dft"), False),
    "train": ("train", ("state.entered", {"state": "EXPLORE"}),
              lambda p: truncate(next(d for d in task_dirs(p, "train") if d.is_dir()) / "result.json"), False),
    "explore": ("explore", ("state.entered", {"state": "SELECT"}), explore_file("candidates.extxyz"), True),
    "explore-last-trusted": ("explore", ("state.entered", {"state": "SELECT"}),
                             explore_file("last_trusted.extxyz"), True),
    "select": ("select", ("state.entered", {"state": "ASSESS"}),
               lambda p: truncate(next(d for d in task_dirs(p, "select") if d.is_dir()) / "result.json"), False),
    "reference": ("reference", ("task.submitted", {"kind": "assess_md"}),
                  lambda p: truncate(first_reference(p)), True),
    "assess_md": ("assess_md", ("task.submitted", {"kind": "assess"}),
                  lambda p: (task_dirs(p, "assess_md")[0] / "md" / "snapshots.extxyz").unlink(), True),
    "assess": ("assess", ("assessment.finished", {}),
               lambda p: (task_dirs(p, "assess")[0] / "result.json").unlink(), False),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_resumed_run_recomputes_what_a_damaged_result_held(finished, copy, case):
    kind, (cut, payload), damage, needed = FAULTS[case]
    stop_before(copy, cut, payload)
    n_events = len(events(copy))
    damage(copy)
    result = run(copy.parent / "input.yaml")
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.returncode == finished[1], result.stderr
    assert outcome(copy) == outcome(finished[0])
    retried = [e.payload for e in events(copy)[n_events:] if e.kind == "task.retried"]
    assert {p["kind"] for p in retried} == ({kind} if needed else set())
    assert all(p["reason"].startswith(DAMAGED) and (copy / p["reason"][len(DAMAGED):]).is_file() for p in retried)


@pytest.mark.parametrize("kind", ["reference", "assess_md", "assess"])
def test_assess_recomputes_a_damaged_reference_or_md_check(finished, copy, kind):
    damage, needed = FAULTS[kind][2:]
    n_events = len(events(copy))
    damage(copy)
    result = mlip_auto("assess", str(copy), "--site", "threads", "--json")
    assert "internal error" not in result.stderr, result.stderr
    assert result.returncode == finished[1], result.stderr
    verdict = json.loads(result.stdout)
    assert {k: verdict[k] for k in ("usable", "reason", "rows")} == {
        k: outcome(finished[0])["verdict"][k] for k in ("usable", "reason", "rows")}
    retried = [e.payload for e in events(copy)[n_events:] if e.kind == "task.retried"]
    assert [p["kind"] for p in retried] == ([kind] if needed else [])


def test_a_resumed_run_without_its_potential_is_refused_naming_it(copy):
    stop_before(copy, "state.entered", {"state": "EXPLORE"})
    (copy / "potentials" / "gen_000.yaml").unlink()
    n_events = len(events(copy))
    result = refusal("run", str(copy.parent / "input.yaml"), "--site", "threads")
    assert result.returncode == 2 and "lacks potentials/gen_000.yaml" in result.stderr, result.stderr
    assert len(events(copy)) == n_events


def test_assess_without_the_potential_is_refused_naming_it(copy):
    (copy / "potentials" / "gen_000.asi").unlink()
    n_events = len(events(copy))
    result = refusal("assess", str(copy), "--site", "threads")
    assert result.returncode == 2 and "lacks potentials/gen_000.asi" in result.stderr, result.stderr
    assert "cannot be assessed" in result.stderr and len(events(copy)) == n_events


@pytest.mark.slow
def test_a_walker_that_would_continue_from_a_lost_frame_fails_the_run_naming_it(tmp_path):
    (tmp_path / "input.yaml").write_text(SAFETY_INPUT.replace("max_generations: 1", "max_generations: 2"))
    assert run(tmp_path / "input.yaml").returncode == 0
    project = tmp_path / "emt_al"
    labels = sorted(t.key for t in fold(events(project)).labels_done())
    stop_before(project, "state.entered", {"state": "EXPLORE", "generation": 1})
    frame = next(path for path in fold(events(project)).explorations[0]["continuations"] if path)
    saved = (project / frame).read_bytes()
    (project / frame).unlink()
    failed = run(tmp_path / "input.yaml")
    state = fold(events(project))
    assert failed.returncode == 1 and "internal error" not in failed.stderr, failed.stderr
    assert state.outcome == "failed" and frame in state.reason and "Restore the file" in state.reason
    (project / frame).write_bytes(saved)
    assert run(tmp_path / "input.yaml").returncode == 0
    assert sorted(t.key for t in fold(events(project)).labels_done()) == labels


@pytest.fixture(scope="module")
def copper(tmp_path_factory) -> Path:
    """A finished EMT project of Cu (no assessment)."""
    folder = tmp_path_factory.mktemp("copper")
    text = SAFETY_INPUT.replace("elements: [Al]", "elements: [Cu]").replace("name: emt_al", "name: emt_cu")
    (folder / "input.yaml").write_text(text)
    assert run(folder / "input.yaml").returncode == 0
    return folder / "emt_cu"


def test_labels_of_an_element_the_project_lacks_are_refused_before_anything_is_written(copper, tmp_path):
    (tmp_path / "input.yaml").write_text(INPUT)
    fresh = tmp_path / "fresh"
    command = ("run", str(tmp_path / "input.yaml"), "--site", "threads", "--from-labels", str(copper))
    result = refusal(*command, "--workdir", str(fresh))
    assert result.returncode == 2, result.stderr
    assert "hold Cu" in result.stderr and "Traceback" not in result.stderr
    assert not fresh.exists()
    by_default = refusal(*command)
    assert by_default.returncode == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_labels_of_a_subset_of_the_elements_are_accepted(finished, tmp_path):
    alloy = INPUT.replace("elements: [Al]", "elements: [Al, Cu]").replace(
        "cubic: true,", "cubic: true, occupation: {Al: 0.5, Cu: 0.5},")
    (tmp_path / "input.yaml").write_text(alloy)
    labels = read_labels(finished[0], load_config(tmp_path / "input.yaml"))
    assert {label.key for label in labels} == {task.key for task in fold(events(finished[0])).labels_done()}
