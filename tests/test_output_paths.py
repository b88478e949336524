"""One rule for every command that writes a file the user names (`status --html`, `export`, `init`).

Against one finished EMT project: no command writes over a file of the project (wherever the path or a
symlink points), over a device, directory, FIFO or socket, over a file it did not write before (unless
--force), or into a missing directory; refusals exit 2 with one paragraph and write nothing. A seeded fuzz
test draws (command, target) pairs over all of these and fresh paths.
"""

import hashlib
import os
import random
import socket
import stat
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import ase.io
import pytest
from installed import mlip_auto
from test_project_safety import INPUT, fingerprint, refusal

from autopipe.output_paths import EXPORT_WRITER, REPORT_MARKER

COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "status": lambda project, target: ["status", str(project), "--html", str(target)],
    "export": lambda project, target: ["export", str(project), str(target)],
    "init": lambda project, target: ["init", str(target)],
}
#: A file of each kind a project holds (globs: task directories are named by their keys).
PROJECT_FILES = [
    "events.sqlite", "events.sqlite-wal", "structures.db", "input.yaml", "system.json",
    "potentials/gen_*.yaml", "generations/gen_000/train/*/result.json", "logs/autopipe.log",
]  # fmt: skip
SPECIAL = ["character device", "directory", "link to the log", "FIFO", "socket", "missing parent"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One EMT project run to DONE and reported once (so its report and the log's -wal file exist)."""
    folder = tmp_path_factory.mktemp("paths")
    (folder / "input.yaml").write_text(INPUT)
    result = mlip_auto("run", str(folder / "input.yaml"), "--site", "threads")
    assert result.returncode == 0, result.stderr
    project = folder / "emt_al"
    assert refusal("status", str(project)).returncode == 0
    assert all(len(list(project.glob(name))) == 1 for name in PROJECT_FILES)
    return project


def snapshot(project: Path) -> dict[str, str]:
    """Everything of the project but its report/: the rows of its databases, the bytes of every other
    file (the log's -wal and the run's log included), and what is there at all."""
    raw = [project / "events.sqlite-wal", project / "logs" / "autopipe.log"]
    entries = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.parts[-1] != "report")
    return {
        **{name: digest for name, digest in fingerprint(project).items() if not name.startswith("report/")},
        **{str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in raw},
        "entries": "\n".join(e for e in entries if not e.startswith("report/")),
    }


def make_special(folder: Path, kind: str, project: Path) -> Path:
    """A target of `kind` in `folder` (a char device needs root: skipped otherwise)."""
    path = folder / kind.replace(" ", "_")
    if kind == "character device":
        if os.geteuid() != 0:
            pytest.skip("os.mknod of a character device needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    elif kind == "directory":
        path.mkdir()
    elif kind == "link to the log":
        path.symlink_to(project / "events.sqlite")
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        path = Path(folder, "s.sock")
        bound = socket.socket(socket.AF_UNIX)
        bound.bind(str(path))
        bound.close()  # the socket file stays
    else:
        path = folder / "missing" / "out.file"
    return path


def kind_of(path: Path) -> tuple[str, ...]:
    """What `path` is, without following a link: the file type, and a link's destination."""
    if not os.path.lexists(path):
        return ("missing",)
    mode = os.lstat(path).st_mode
    return (stat.filemode(mode)[0], os.readlink(path) if stat.S_ISLNK(mode) else "")


def refused(result, target: Path) -> bool:
    """A clean refusal naming `target`: exit 2, one 'Error:' paragraph, no traceback."""
    return (
        result.returncode == 2
        and result.stderr.startswith("Error: refusing to write")
        and str(target) in result.stderr
        and "Traceback" not in result.stderr + result.stdout
    )


@pytest.mark.parametrize("force", [False, True], ids=["plain", "--force"])
@pytest.mark.parametrize("victim", PROJECT_FILES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_writes_over_a_file_of_the_project(project, command, victim, force):
    target = next(project.glob(victim))
    before = snapshot(project)
    result = refusal(*COMMANDS[command](project, target), *["--force"] * force)
    assert refused(result, target), result.stderr
    assert f"it is inside the project {project}" in result.stderr and "outside the project" in result.stderr
    assert snapshot(project) == before


@pytest.mark.timeout(60)  # a FIFO opened for writing would block: the test must fail, not hang
@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_writes_over_a_special_file_or_into_a_missing_directory(project, tmp_path, command, kind):
    target = make_special(tmp_path, kind, project)
    before, what = snapshot(project), kind_of(target)
    result = refusal(*COMMANDS[command](project, target), "--force")  # --force changes none of this
    assert refused(result, target), result.stderr
    reason = {
        "character device": "it is a character device, not a regular file",
        "directory": "it is a directory, not a regular file",
        "link to the log": f"(which points to {project / 'events.sqlite'}): it is inside the project",
        "FIFO": "it is a FIFO (named pipe), not a regular file",
        "socket": "it is a socket, not a regular file",
        "missing parent": f"the directory {target.parent} does not exist",
    }[kind]
    assert reason in result.stderr
    assert kind_of(target) == what and snapshot(project) == before
    made = [] if kind == "missing parent" else [target.name]
    assert [p.name for p in tmp_path.iterdir()] == made  # no .partial, no directory
    if kind == "character device":
        assert stat.S_ISCHR(os.stat(target).st_mode)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unrelated_file_is_replaced_only_with_force(project, tmp_path, command):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    result = refusal(*COMMANDS[command](project, mine))
    assert refused(result, mine) and "it already exists" in result.stderr and "pass --force" in result.stderr
    assert mine.read_text() == "my notes\n" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert refusal(*COMMANDS[command](project, mine), "--force").returncode == 0
    assert mine.read_text() != "my notes\n"


@pytest.fixture
def locked(tmp_path) -> Iterator[Path]:
    """A directory this process cannot write to: mode 0o500, and for root (who ignores modes) a read-only
    bind mount of itself."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    if os.geteuid() != 0:
        yield folder
        return
    subprocess.run(["mount", "--bind", folder, folder], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unwritable_directory_is_a_clear_refusal(project, locked, command):
    result = refusal(*COMMANDS[command](project, locked / "out.file"))
    assert refused(result, locked / "out.file") and f"the directory {locked} is not writable" in result.stderr
    assert not list(locked.iterdir())


def test_each_command_writes_again_over_its_own_output_and_only_its_own(project, tmp_path):
    outputs = {command: tmp_path / f"{command}.out" for command in COMMANDS}
    for command, target in outputs.items():
        assert refusal(*COMMANDS[command](project, target)).returncode == 0, command
    assert REPORT_MARKER in outputs["status"].read_text()[:200]
    assert ase.io.read(outputs["export"], 0, format="extxyz").info["written_by"] == EXPORT_WRITER
    assert refusal(*COMMANDS["status"](project, outputs["status"])).returncode == 0
    assert refusal(*COMMANDS["export"](project, outputs["export"])).returncode == 0
    init_again = refusal(*COMMANDS["init"](project, outputs["init"]))  # an input is edited: never replaced
    assert refused(init_again, outputs["init"]) and "--force" in init_again.stderr
    for command, target in outputs.items():
        for other in set(COMMANDS) - {command}:
            before = target.read_bytes()
            assert refused(refusal(*COMMANDS[other](project, target)), target), (other, command)
            assert target.read_bytes() == before


def test_a_link_is_judged_and_written_by_what_it_points_to(project, tmp_path):
    page, link, dangling = tmp_path / "page.html", tmp_path / "latest.html", tmp_path / "next.html"
    assert refusal("status", str(project), "--html", str(page)).returncode == 0
    link.symlink_to(page)
    dangling.symlink_to(tmp_path / "new.html")
    page.write_text(page.read_text().replace("<h1>", "<h1>old "))
    assert refusal("status", str(project), "--html", str(link)).returncode == 0
    assert link.is_symlink() and "<h1>old " not in page.read_text()
    assert refusal("export", str(project), str(dangling)).returncode == 0
    assert dangling.is_symlink() and (tmp_path / "new.html").is_file()


def test_the_default_report_and_the_report_directory_stay_allowed(project, tmp_path):
    """Even a report of an older version (no marker) is replaced; report/ is made where missing."""
    (project / "report" / "status.html").write_text("<html>an older report</html>")
    assert refusal("status", str(project)).returncode == 0
    assert REPORT_MARKER in (project / "report" / "status.html").read_text()
    assert refusal("status", str(project), "--html", str(project / "report" / "gen0.html")).returncode == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("events.sqlite", "structures.db"):
        (fresh / name).write_bytes((project / name).read_bytes())
    assert refused(refusal("status", str(fresh), "--html", str(fresh / "report")), fresh / "report")
    assert not (fresh / "report").exists()  # report/ itself stays a name for the directory
    assert refusal("status", str(fresh)).returncode == 0 and (fresh / "report" / "status.html").is_file()
    deeper = refusal("status", str(project), "--html", str(project / "report" / "new" / "s.html"))
    assert refused(deeper, project / "report" / "new" / "s.html")
    assert not (project / "report" / "new").exists()


def fuzz_targets(project: Path, folder: Path) -> dict[Path, str]:
    """Every target the fuzz test draws from, by kind: 'project' (files, directories and new names inside
    the project), 'special', 'fresh' (new paths outside, or new names under report/, status' own place)."""
    targets = {p: "project" for p in project.rglob("*") if "report" not in p.relative_to(project).parts}
    targets |= {project / name: "project" for name in ("new.extxyz", "generations/new.html", "logs/x.html")}
    for kind in SPECIAL[1:]:  # the character device has a test of its own, which needs root
        targets[make_special(folder, kind, project)] = "special"
    for name, points_to in [("to_dir", project / "generations"), ("to_db", project / "structures.db"),
                            ("to_fifo", folder / "FIFO"), ("loop", folder / "loop")]:  # fmt: skip
        (folder / name).symlink_to(points_to)
        targets[folder / name] = "special"
    (folder / "to_fresh").symlink_to(folder / "fresh_by_link.xyz")
    targets[folder / "to_fresh"] = "fresh"
    for index in range(20):
        targets[folder / f"fresh_{index}.out"] = "fresh"
        targets[project / "report" / f"fresh_{index}.html"] = "fresh"
    return targets


def test_fuzz_no_project_or_special_file_ever_changes(project, tmp_path):
    folder = tmp_path / "targets"
    folder.mkdir()
    targets = fuzz_targets(project, folder)
    kinds = sorted(set(targets.values()))  # in a fixed order: the draws depend on nothing but the seed
    by_kind = {kind: sorted(p for p, k in targets.items() if k == kind) for kind in kinds}
    special = {p: kind_of(p) for p in by_kind["special"]}
    before, written, outcomes = snapshot(project), set(), Counter()
    rng = random.Random(19)
    for draw in range(150):
        kind = rng.choice(list(by_kind))
        command, target, force = rng.choice(list(COMMANDS)), rng.choice(by_kind[kind]), rng.random() < 0.3
        result = refusal(*COMMANDS[command](project, target), *["--force"] * force)
        case = (draw, command, str(target), force, result.stderr)
        outcomes[kind, result.returncode] += 1
        if kind != "fresh":
            assert refused(result, target), case
        elif result.returncode == 0:
            path = target.resolve()
            in_report = command == "status" and path.parent == project / "report"
            assert path.is_file() and (in_report or project not in path.parents), case
            written.add(target)
        else:  # another command's output, or a new name under report/ for export or init
            assert refused(result, target), case
            assert target in written or (command != "status" and project in target.parents), case
        assert {p: kind_of(p) for p in special} == special, case
    assert snapshot(project) == before
    assert not list(folder.rglob("*.partial")) and not list(project.rglob("*.partial"))
    assert min(outcomes[k] for k in [("fresh", 0), ("fresh", 2), ("special", 2), ("project", 2)]) >= 10
