"""`mlip-auto md` and `mlip-auto assess` as a user meets them: one Ctrl-C (or SIGTERM) stops either within
seconds with exit 130 and keeps what ran; `md` refuses options and structures that input.yaml would refuse,
before its potential sees them and before anything is written."""

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from installed import mlip_auto, start_as_from_a_terminal
from typer.testing import CliRunner

from autopipe.cli import app

INPUT = """
project: {name: emt_al}
elements: [Al]
structures:
  generator: {prototype: fcc, cubic: true, rattled: 6, rattle_stdev: 0.05, max_rattle_stdev: 0.05, strained: 2,
              scaled: 5, max_volume_change: 0.1}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 16}
exploration: {temperatures: [300], steps: 100, check_interval: 10, gamma_select: 1000.0, gamma_halt: 1.0e9,
              ensembles: [nvt], min_distance: 1.5}
loop: {max_generations: 1, dft_budget: 40, seed: 3}
assess:
  enabled: false
  properties: [eos, md_forces]
  md: {supercell: [2, 2, 2], steps: 400, snapshots: 1, temperature: 300}
"""
STOP_WITHIN = 10.0  # seconds from the signal to the exit


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A trained EMT project (one generation, threads site); its gamma_halt is out of reach, so `md` runs on."""
    folder = tmp_path_factory.mktemp("md")
    (folder / "input.yaml").write_text(INPUT)
    result = mlip_auto("run", str(folder / "input.yaml"), "--site", "threads")
    assert result.returncode == 0, result.stdout + result.stderr
    write(folder / "start.extxyz", bulk("Al", "fcc", a=4.05, cubic=True).repeat(2))
    return folder / "emt_al"


def rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def interrupt(args: list[str], ready, sig: int) -> tuple[subprocess.CompletedProcess, float]:
    """Start the installed CLI with `args`, send `sig` once `ready()` holds; its result and the seconds from
    the signal to its exit."""
    process = start_as_from_a_terminal(*args)
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "never got going"
            time.sleep(0.05)
        process.send_signal(sig)
        sent = time.monotonic()
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(args, process.returncode, out, err), time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize(("engine", "sig"), [("ase", signal.SIGINT), ("ase", signal.SIGTERM),
                                             ("lammps", signal.SIGINT)], ids=["ase-SIGINT", "ase-SIGTERM", "lammps-SIGINT"])
def test_one_signal_stops_a_long_md_within_seconds_and_keeps_its_files(project, engine, sig):
    before = set((project / "md").glob("run_*"))
    args = ["md", str(project), "--structure", str(project.parent / "start.extxyz"), "--steps", "5000000",
            "--temperature", "300", "--engine", engine]

    def running() -> bool:
        new = set((project / "md").glob("run_*")) - before
        return bool(new) and rows(next(iter(new)) / "gamma.csv") > 3

    result, seconds = interrupt(args, running, sig)

    assert result.returncode == 130 and seconds < STOP_WITHIN, (seconds, result.stderr)
    assert "Interrupted" in result.stderr and "Traceback" not in result.stderr
    (run_dir,) = set((project / "md").glob("run_*")) - before
    written = rows(run_dir / "gamma.csv")
    time.sleep(1.0)
    assert rows(run_dir / "gamma.csv") == written > 3  # nothing integrates on
    summary = json.loads((run_dir / "result.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["steps_done"] < 5_000_000
    assert summary["engine"] == engine and (run_dir / "candidates.extxyz").is_file()
    assert not (run_dir / "stop").exists()
    print(f"{engine} md stopped {seconds:.2f} s after {signal.Signals(sig).name}")


def events(project: Path) -> list[tuple[str, dict]]:
    with sqlite3.connect(f"file:{project / 'events.sqlite'}?mode=ro", uri=True) as conn:
        try:
            found = conn.execute("select kind, payload from events order by seq").fetchall()
        except sqlite3.OperationalError:
            return []
    return [(kind, json.loads(payload)) for kind, payload in found]


def test_one_ctrl_c_stops_assess_and_the_rerun_recomputes_nothing_finished(project, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    for copy in (whole, stopped):
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("md"))
    straight = mlip_auto("assess", str(whole), "--site", "threads", "--json")
    assert straight.returncode in (0, 3), straight.stderr
    n_before = len(events(stopped))

    def md_check_running() -> bool:
        return any(kind == "task.submitted" and p["kind"] == "assess_md" for kind, p in events(stopped)[n_before:])

    result, seconds = interrupt(["assess", str(stopped), "--site", "threads"], md_check_running, signal.SIGINT)
    assert result.returncode == 130 and seconds < STOP_WITHIN, (seconds, result.stderr)
    assert "Interrupted" in result.stderr and "Traceback" not in result.stderr
    print(f"assess stopped {seconds:.2f} s after SIGINT")
    log = events(stopped)
    finished = {p["key"] for kind, p in log[n_before:] if kind == "task.completed"}
    assert finished and "assessment.finished" not in [kind for kind, _ in log[n_before:]]

    again = mlip_auto("assess", str(stopped), "--site", "threads", "--json")

    assert again.returncode == straight.returncode, again.stderr
    verdict, expected = json.loads(again.stdout), json.loads(straight.stdout)
    assert [verdict[k] for k in ("usable", "reason", "rows")] == [expected[k] for k in ("usable", "reason", "rows")]
    started_again = {p["key"] for kind, p in events(stopped)[len(log):] if kind in ("task.submitted", "task.retried")}
    assert not started_again & finished  # what finished before Ctrl-C is not computed again
    assert set(Counter(p["key"] for kind, p in events(stopped) if kind == "task.completed").values()) == {1}


def invoke(project: Path, *args: str):
    """`mlip-auto md PROJECT ...` in this process; checks that nothing was written under PROJECT/md/."""
    before = sorted((project / "md").rglob("*")) if (project / "md").exists() else []
    result = CliRunner().invoke(app, ["md", str(project), *args])
    assert (sorted((project / "md").rglob("*")) if (project / "md").exists() else []) == before
    return result


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--temperature", "inf", "--temperature inf: input should be a finite number"),
    ("--temperature", "1e30", "--temperature 1e+30: input should be less than or equal to 20000"),
    ("--temperature", "0", "--temperature 0.0: input should be greater than 0"),
    ("--temperature", "-5", "--temperature -5.0: input should be greater than 0"),
    ("--temperature", "nan", "--temperature nan: input should be a finite number"),
    ("--pressure", "nan", "--pressure nan: input should be a finite number"),
    ("--pressure", "inf", "--pressure inf: input should be a finite number"),
    ("--pressure", "1e30", "--pressure 1e+30: input should be less than or equal to 1000"),
    ("--steps", "1e30", "Invalid value for '--steps'"),
    ("--steps", "0", "--steps 0: input should be greater than 0"),
    ("--steps", "-1", "--steps -1: input should be greater than 0"),
    ("--steps", str(10**30), "at most 10,000,000, the limit on MD steps per walker"),
    ("--engine", "gromacs", "--engine gromacs: input should be 'ase' or 'lammps'"),
])
def test_md_refuses_options_input_yaml_would_refuse(project, option, value, expected):
    options = {"--steps": "10", "--temperature": "300", option: value}
    result = invoke(project, "--structure", str(project.parent / "start.extxyz"),
                    *(word for pair in options.items() for word in pair))
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def broken(kind: str):
    """fcc Al (4 atoms) broken one way."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    if kind == "nan":
        atoms.positions[2] = np.nan
    elif kind == "coplanar":
        atoms.cell = [[4.05, 0, 0], [0, 4.05, 0], [4.05, 4.05, 0]]
    elif kind == "coincident":
        atoms.positions[3] = atoms.positions[1]
    elif kind == "tiny":
        atoms.set_cell(atoms.cell * 0.3, scale_atoms=True)
    elif kind == "huge":
        atoms.set_cell(atoms.cell * 30)
    return atoms


@pytest.mark.parametrize(("kind", "expected"), [
    ("nan", "frame 0 has positions or a cell that are not finite numbers"),
    ("coplanar", "frame 0 has no full 3D cell: its three cell vectors are coplanar"),
    ("coincident", "in frame 0, atoms 1 and 3 are 0.00 A apart; the project's exploration.min_distance is 1.5 A"),
    ("tiny", "frame 0 has a volume of 0.448 A^3 per atom, outside the 1 to 10,000 A^3 per atom"),
    ("huge", "frame 0 has a volume of 4.48e+05 A^3 per atom, outside the 1 to 10,000 A^3 per atom"),
])
def test_md_refuses_a_broken_structure_naming_file_frame_and_problem(project, tmp_path, kind, expected):
    path = tmp_path / f"{kind}.extxyz"
    write(path, broken(kind))
    result = invoke(project, "--structure", str(path), "--steps", "10", "--temperature", "300")
    assert result.exit_code == 2, result.output
    assert f"--structure {path}: {expected}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
