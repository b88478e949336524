"""Production MD with a project's newest potential (`mlip-auto md`), watching where it extrapolates.

The run is an exploration walker of any length (ASE or LAMMPS engine, the project's exploration settings
otherwise), in ``PROJECT/md/run_NNN/``: ``gamma.csv`` streams the grade while it runs, and the frames at or
above ``gamma_select`` land in ``candidates.extxyz``, the format a walker writes, ready to be labelled by a
later run (docs/exploration.md). Nothing is appended to the event log: the run's history stays the run's.
"""

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ase.io import read

from autopipe.apps.explore import run_walker
from autopipe.apps.explore.walker import GAMMA_LOG
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import UsageError
from autopipe.project_reader import read_log
from autopipe.replay import replay

MD_DIR = "md"
POLL = 0.2  # seconds between looks at gamma.csv


def run_md(
    project: Path,
    structure_file: Path,
    *,
    steps: int,
    temperature: float,
    pressure: float | None,
    engine: str | None,
    seed: int,
    lammps_command: str | None,
    on_row: Callable[[dict[str, float]], None],
) -> dict[str, Any]:
    """Run MD with PROJECT's newest potential from the first frame of `structure_file`; `on_row` gets each
    check (a gamma.csv row) as it is written. Returns the walker's result plus `generation` and `workdir`.

    Bad input (no potential yet, an unreadable structure, an element the potential lacks) raises UsageError
    before anything is written.
    """
    state = replay(read_log(project))
    if not state.models:
        raise UsageError(f"{project} has no trained potential yet: run `mlip-auto run` on it first.")
    generation = max(state.models)
    model = state.models[generation]
    atoms = _structure(structure_file, state.config["elements"])
    exploration = state.config["exploration"]
    settings = {**exploration, "steps": steps, "engine": engine or exploration["engine"]}
    workdir = _new_run_dir(project / MD_DIR)
    with ThreadPoolExecutor(1) as pool:
        potential, active_set = (str(project / model[name]) for name in ("potential", "active_set"))
        future = pool.submit(run_walker, atoms_to_dict(atoms), potential, active_set, settings, temperature, seed,
                             str(workdir), pressure, lammps_command)
        _follow(workdir / GAMMA_LOG, future.done, on_row)
        result = {**future.result(), "generation": generation, "workdir": str(workdir)}
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _structure(path: Path, elements: list[str]) -> Any:
    """The first frame of `path`, periodic in 3D and made of the project's elements; UsageError otherwise."""
    try:
        atoms = read(path, index=0)
    except Exception as err:  # noqa: BLE001 - ase.io raises anything from OSError to StopIteration
        raise UsageError(f"--structure {path}: cannot read it ({type(err).__name__}: {err}).") from None
    if atoms.cell.rank != 3:
        raise UsageError(f"--structure {path}: the structure needs a full 3D cell for periodic MD.")
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise UsageError(
            f"--structure {path} contains {', '.join(unknown)}, which the potential does not know "
            f"(it knows {', '.join(elements)})."
        )
    atoms.pbc = True
    return atoms


def _new_run_dir(parent: Path) -> Path:
    """`parent`/run_NNN with the next free number, created."""
    parent.mkdir(exist_ok=True)
    number = 1 + max((int(p.name[4:]) for p in parent.glob("run_[0-9][0-9][0-9]")), default=0)
    folder = parent / f"run_{number:03d}"
    folder.mkdir()
    return folder


def _follow(path: Path, finished: Callable[[], bool], on_row: Callable[[dict[str, float]], None]) -> None:
    """Hand every complete row of the CSV file `path` to `on_row` as it is written, until `finished()`."""
    position, names = 0, None
    while True:
        last_look = finished()
        if path.is_file():
            with open(path) as handle:
                handle.seek(position)
                text = handle.read()
            complete = text[: text.rfind("\n") + 1]
            position += len(complete)
            for line in complete.splitlines():
                if names is None:
                    names = line.split(",")
                else:
                    on_row(dict(zip(names, map(float, line.split(",")), strict=True)))
        if last_look:
            return
        time.sleep(POLL)
