"""Production MD with a project's newest potential (`mlip-auto md`), watching where it extrapolates.

The run is an exploration walker of any length (ASE or LAMMPS engine, the project's exploration settings
otherwise), in ``PROJECT/md/run_NNN/``: ``gamma.csv`` streams the grade while it runs, and the frames at or
above ``gamma_select`` land in ``candidates.extxyz``, the format a walker writes, ready to be labelled by a
later run (docs/exploration.md). Nothing is appended to the event log: the run's history stays the run's. Ctrl-C (or SIGTERM) asks the
walker to stop at its next check, so the files hold every step that ran and result.json says "interrupted".
"""

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.io import read
from pydantic import ValidationError

from autopipe.apps.explore import run_walker
from autopipe.apps.explore.guards import closest_pair
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.explore.walker import GAMMA_LOG
from autopipe.apps.structures import atoms_to_dict
from autopipe.apps.structures.checks import cell_problem
from autopipe.errors import UsageError
from autopipe.limits import LIMITS
from autopipe.project_reader import read_log
from autopipe.replay import replay

MD_DIR = "md"
POLL = 0.2  # seconds between looks at gamma.csv
STOP_FILE = "stop"  # created in the run's folder on Ctrl-C: the walker ends at its next check
#: The option of `mlip-auto md` that sets each exploration setting it overrides.
OPTIONS = {"steps": "--steps", "temperatures": "--temperature", "pressures": "--pressure", "engine": "--engine"}
MOST_STEPS = LIMITS["MD steps per walker"][0]
log = logging.getLogger("autopipe")


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

    Bad input (no potential yet, options outside what the project's `exploration:` section allows, an
    unreadable or unphysical structure, an element the potential lacks) raises UsageError before anything
    is written. On KeyboardInterrupt the walker is stopped and its result.json written before it propagates.
    """
    events = read_log(project)
    if not events.intact:
        raise UsageError(f"{events.damage_message()}: which potential it trained last cannot be trusted.")
    state = replay(events)
    if not state.models:
        raise UsageError(f"{project} has no trained potential yet: run `mlip-auto run` on it first.")
    generation = max(state.models)
    model = state.models[generation]
    exploration = state.config["exploration"]
    settings = md_settings(exploration, steps=steps, temperature=temperature, pressure=pressure, engine=engine)
    atoms = _structure(structure_file, state.config["elements"], exploration["min_distance"])
    workdir = _new_run_dir(project / MD_DIR)
    stop_file = workdir / STOP_FILE
    with ThreadPoolExecutor(1) as pool:
        potential, active_set = (str(project / model[name]) for name in ("potential", "active_set"))
        future = pool.submit(run_walker, atoms_to_dict(atoms), potential, active_set, settings, temperature, seed,
                             str(workdir), pressure, lammps_command, str(stop_file))
        try:
            _follow(workdir / GAMMA_LOG, future.done, on_row)
        except KeyboardInterrupt:
            stop_file.touch()  # the walker ends at its next check, its files complete
            result = _record(future.result(), generation, workdir)
            log.warning("stopped after %d steps; %s keeps gamma.csv, candidates.extxyz and result.json",
                        result["steps_done"], workdir)
            raise
        finally:
            stop_file.unlink(missing_ok=True)
    return _record(future.result(), generation, workdir)


def md_settings(exploration: dict[str, Any], *, steps: int, temperature: float, pressure: float | None,
                engine: str | None) -> dict[str, Any]:
    """The project's exploration settings with this run's steps and engine, after checking the options
    against the `exploration:` schema itself and the limit on MD steps, so `md` allows what input.yaml
    allows; UsageError naming the option otherwise."""
    asked = {"steps": steps, "temperatures": [temperature], "pressures": [0.0 if pressure is None else pressure],
             "engine": engine or exploration["engine"]}
    try:
        ExplorationSettings.model_validate({**exploration, **asked})
    except ValidationError as err:
        problem = err.errors()[0]
        key = problem["loc"][0]
        raise UsageError(f"{OPTIONS.get(key, 'the project')} {problem['input']}: {problem['msg'].lower()}, as "
                         f"for exploration.{key} in input.yaml (docs/input-reference.md).") from None
    if steps > MOST_STEPS:
        raise UsageError(f"--steps {steps:,}: at most {MOST_STEPS:,}, the limit on MD steps per walker "
                         "(docs/input-reference.md, Limits).")
    return {**exploration, "steps": steps, "engine": asked["engine"]}


def _record(result: dict[str, Any], generation: int, workdir: Path) -> dict[str, Any]:
    """The walker's result with the generation and folder, also written to the folder's result.json."""
    result = {**result, "generation": generation, "workdir": str(workdir)}
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _structure(path: Path, elements: list[str], min_distance: float) -> Atoms:
    """The first frame of `path`, a sane periodic cell (`cell_problem`) of the project's elements with no pair
    closer than the project's `exploration.min_distance`; UsageError otherwise."""
    try:
        atoms = read(path, index=0)
    except Exception as err:  # noqa: BLE001 - ase.io raises anything from OSError to StopIteration
        raise UsageError(f"--structure {path}: cannot read it ({type(err).__name__}: {err}).") from None
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise UsageError(
            f"--structure {path} contains {', '.join(unknown)}, which the potential does not know "
            f"(it knows {', '.join(elements)})."
        )
    problem = cell_problem(atoms)
    if problem:
        raise UsageError(f"--structure {path}: frame 0 {problem}.")
    atoms.pbc = True
    pair = closest_pair(atoms, min_distance)
    if pair:
        raise UsageError(f"--structure {path}: in frame 0, atoms {pair[0]} and {pair[1]} are {pair[2]:.2f} A "
                         f"apart; the project's exploration.min_distance is {min_distance:g} A.")
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
