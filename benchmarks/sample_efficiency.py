"""Sample efficiency: the product's active-learning loop against random picks, on a held-out EMT test set.

ASE's EMT is the oracle (the project's `dft.engine: emt`), so a comparison takes minutes. Per system and seed:

- loop: `mlip-auto run` on a generated input.yaml (site `threads`, assessment off), the quickstart's linear
  ACE basis; every generation's potential is measured.
- random: N frames drawn from a pool of EMT MD (the loop's temperatures, NVT and each NPT pressure) and
  rattled, strained, scaled and vacancy cells, for N on the loop's label counts and a grid up to the DFT
  budget, each fitted with `autopipe.apps.train.fit` and the loop's own training settings.

The test set is never trained on: EMT MD at 900 and 1200 K at 0.97/1.00/1.03 a0 in 32- and 108-atom cells,
vacancy cells and a (111) slab (what random picks from bulk MD rarely see). Writes `results_<method>.json`
and one PNG of curves per system into `--out`, named by the selection method, and prints the tables of
docs/benchmarks.md.

    .venv/bin/python benchmarks/sample_efficiency.py [--systems Al Cu AlCu] [--seeds 0 1 2]
        [--selection d_optimal|max_gamma|farthest_point|random] [--functions N] [--quick] [--nonlinear]
        [--workdir DIR] [--out docs/sample_efficiency]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

import ase.io
import numpy as np
import yaml
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.eos import EquationOfState
from pyace import PyACECalculator

from autopipe.apps.dft.emt import emt_label
from autopipe.apps.explore.dynamics import make_dynamics
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.select.settings import Method, SelectionSettings
from autopipe.apps.structures import atoms_from_dict
from autopipe.apps.structures.generate import initial_structures
from autopipe.apps.train import TrainingFailure, fit
from autopipe.events import EventStore, fold

MLIP_AUTO = Path(sys.executable).parent / "mlip-auto"
NAMESPACE = uuid.UUID("0b7e55f4-3c1d-4c8e-9a0e-5e1f2a6d9c3b")
CLOSE_ENOUGH = 1.05  # "within 5 % of random's converged test force RMSE"
CATEGORIES = ("MD 0.97 a0", "MD 1.00 a0", "MD 1.03 a0", "vacancy", "(111) slab")  # of the held-out set
TEST_SEED = 12345  # the test set is the same for every run of a system

# The quickstart's basis (examples/quickstart/input.yaml); the rest of the loop's input per size below.
TRAINING = {"mode": "linear", "accuracy": "fast", "cutoff": 5.0, "functions_per_element": 30, "kappa": 0.1}


@dataclass(frozen=True)
class Size:
    """How big one benchmark is: cells, loop limits, MD lengths, pool and test set."""

    supercell: int  # repeats of the 4-atom conventional fcc cell in the loop's and the pool's cells
    generator: dict[str, Any]  # the loop's starting structures (structures.generator, minus prototype/a)
    exploration: dict[str, Any]
    max_per_generation: int
    max_generations: int
    dft_budget: int
    pool_steps: int  # EMT MD steps per pool trajectory
    pool_stride: int  # steps between pool frames
    pool_static: int  # generator copies of each kind (rattled, strained, scaled, vacancies) in the pool
    random_grid: tuple[int, ...]  # random-pick sizes besides the loop's label counts
    test_temperatures: tuple[float, ...]
    test_scales: tuple[float, ...]
    test_repeats: tuple[int, ...]  # 2 -> 32 atoms, 3 -> 108
    test_steps: int
    test_frames: int  # frames kept per test trajectory (its last steps)


FULL = Size(
    supercell=2,
    generator={"include_ideal": True, "rattled": 8, "rattle_stdev": 0.05,
               "max_rattle_stdev": 0.05, "strained": 4, "max_strain": 0.03,
               "scaled": 7, "max_volume_change": 0.12, "vacancies": 2},
    exploration={"temperatures": [600, 900, 1200], "ensembles": ["nvt", "npt"], "pressures": [0, 5],
                 "steps": 300, "timestep_fs": 2.0, "gamma_select": 5.0, "gamma_halt": 25.0,
                 "max_frames_per_walker": 10},
    max_per_generation=SelectionSettings().max_per_generation, max_generations=6, dft_budget=60,
    pool_steps=300, pool_stride=20, pool_static=12, random_grid=(20, 30, 40, 50, 60),
    test_temperatures=(900, 1200), test_scales=(0.97, 1.00, 1.03), test_repeats=(2, 3),
    test_steps=150, test_frames=3,
)
# A lean start: the loop's first potential costs 8 labels (15 for the binary alloy: 13 and its two pure end
# members), not 22, so a saving against random's 10-20 labels can show; random is then measured from 10 labels on
# as well. Enough cells that every element usually keeps 150 atoms (the default basis's functions) after the
# validation split; when it does not, `mlip-auto run` refuses the input and the case is reported as refused.
def lean_start(system: System, cold: bool = False) -> dict[str, Any]:
    """The lean starting set, rattled as the product's generator rattles by default; `cold`: every rattled copy
    at 0.05 A, as before the default changed (the tables measured then)."""
    cold_rattle = {"rattle_stdev": 0.05, "max_rattle_stdev": 0.05} if cold else {}
    return {"include_ideal": True, "rattled": 3 if len(system.elements) == 1 else 8, **cold_rattle,
            "strained": 1, "max_strain": 0.03, "scaled": 2, "max_volume_change": 0.12, "vacancies": 1}


LEAN_GRID = (10, 15)
# `--surfaces`: a slab other than the test set's (111), in the loop's start and (one among ~180) in the pool.
SLAB = {"surfaces": [[1, 0, 0]], "slab_layers": 4}
QUICK = Size(
    supercell=2,
    generator={"include_ideal": True, "rattled": 4, "rattle_stdev": 0.05,
               "max_rattle_stdev": 0.05, "strained": 2, "max_strain": 0.03,
               "scaled": 3, "max_volume_change": 0.1, "vacancies": 1},
    exploration={"temperatures": [900], "ensembles": ["nvt", "npt"], "pressures": [0], "steps": 100,
                 "timestep_fs": 2.0, "gamma_select": 5.0, "gamma_halt": 25.0, "max_frames_per_walker": 4},
    max_per_generation=4, max_generations=2, dft_budget=20,
    pool_steps=100, pool_stride=20, pool_static=3, random_grid=(20,),
    test_temperatures=(1200,), test_scales=(0.97, 1.03), test_repeats=(2,), test_steps=60, test_frames=1,
)


@dataclass(frozen=True)
class System:
    """A material: its elements, and the fraction of host atoms swapped for the second element (alloys)."""

    name: str
    host: str
    elements: tuple[str, ...]
    swap: float = 0.0

    def decorate(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        """`atoms` (a pure host cell) with `swap` of its atoms, chosen at random, turned into the other element."""
        if self.swap:
            other = next(e for e in self.elements if e != self.host)
            chosen = rng.choice(len(atoms), size=round(self.swap * len(atoms)), replace=False)
            symbols = np.array(atoms.get_chemical_symbols())
            symbols[chosen] = other
            atoms.set_chemical_symbols(symbols.tolist())
        return atoms


SYSTEMS = {
    "Al": System("Al", "Al", ("Al",)),
    "Cu": System("Cu", "Cu", ("Cu",)),
    "AlCu": System("AlCu", "Cu", ("Al", "Cu"), swap=0.5),
}


# --- the oracle ---------------------------------------------------------------------------------------------


def labelled(atoms: Atoms, **info: Any) -> Atoms:
    """A copy of `atoms` carrying its EMT energy, forces and stress (the loop's own EMT label)."""
    label = emt_label(atoms)
    frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.calc = SinglePointCalculator(frame, energy=label["energy"], forces=np.array(label["forces"]),
                                       stress=np.array(label["stress"]) if label["stress"] else None)
    frame.info.update(info)
    return frame


def emt_a0(system: System, size: Size) -> float:
    """EMT's lattice constant of the system (its random cell for an alloy), from E(V) at 0 K."""
    cell = system.decorate(bulk(system.host, "fcc", cubic=True).repeat(size.supercell), np.random.default_rng(0))
    a_ref = cell.cell.lengths()[0] / size.supercell
    scales = np.linspace(0.96, 1.04, 9)
    energies, volumes = [], []
    for s in scales:
        atoms = cell.copy()
        atoms.set_cell(cell.cell * s, scale_atoms=True)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
        volumes.append(atoms.get_volume())
    v0, _, _ = EquationOfState(volumes, energies).fit()
    return float(a_ref * (v0 / cell.get_volume()) ** (1 / 3))


def emt_md(atoms: Atoms, temperature: float, pressure: float | None, steps: int, keep: list[int],
           seed: int, **info: Any) -> list[Atoms]:
    """EMT MD with the walkers' integrators; the labelled frames at the steps in `keep`."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    dynamics = make_dynamics(atoms, timestep_fs=2.0, temperature=temperature, pressure_gpa=pressure,
                             friction=0.01, rng=np.random.default_rng(seed))
    frames = []
    for step in sorted(keep):
        dynamics.run(step - dynamics.nsteps)
        frames.append(labelled(atoms, step=step, temperature=temperature, **info))
    return frames


def ideal_cell(system: System, a0: float, repeats: int, rng: np.random.Generator) -> Atoms:
    return system.decorate(bulk(system.host, "fcc", a=a0, cubic=True).repeat(repeats), rng)


def held_out_set(system: System, a0: float, size: Size) -> list[Atoms]:
    """The held-out frames: hot MD at three lattice constants and two cell sizes, vacancies, a slab."""
    rng = np.random.default_rng(TEST_SEED)
    keep = [size.test_steps - 25 * i for i in range(size.test_frames)]
    frames = []
    for temperature in size.test_temperatures:
        for scale in size.test_scales:
            for repeats in size.test_repeats:
                cell = ideal_cell(system, a0 * scale, repeats, rng)
                frames += emt_md(cell, temperature, None, size.test_steps, keep, int(rng.integers(2**31)),
                                 category=f"MD {scale:.2f} a0")
    for repeats in size.test_repeats:
        cell = ideal_cell(system, a0, repeats, rng)
        del cell[int(rng.integers(len(cell)))]
        frames += emt_md(cell, min(size.test_temperatures), None, size.test_steps, keep,
                         int(rng.integers(2**31)), category="vacancy")
    slab = system.decorate(fcc111(system.host, size=(3, 3, 4), a=a0, vacuum=7.5, periodic=True), rng)
    frames += emt_md(slab, min(size.test_temperatures), None, size.test_steps, keep, int(rng.integers(2**31)),
                     category="(111) slab")
    return frames


def pool(system: System, a0: float, size: Size) -> list[Atoms]:
    """Random's candidates: EMT MD under every condition of the loop's exploration schedule, plus the
    generator's rattled, strained, scaled and vacancy cells (other seeds than the loop's)."""
    rng = np.random.default_rng(7)
    conditions = sorted(set(ExplorationSettings.model_validate(size.exploration).schedule()),
                        key=lambda c: (c[0], -1e9 if c[1] is None else c[1]))
    keep = list(range(size.pool_stride, size.pool_steps + 1, size.pool_stride))
    frames = []
    for temperature, pressure in conditions:
        frames += emt_md(ideal_cell(system, a0, size.supercell, rng), temperature, pressure, size.pool_steps,
                         keep, int(rng.integers(2**31)), category="pool MD")
    generator = {**size.generator, **{k: size.pool_static for k in ("rattled", "strained", "scaled", "vacancies")}}
    for structure in starting_structures(system, a0, size, generator, seed=1000):
        frames.append(labelled(structure, category="pool static"))
    return frames


def generator_settings(system: System, a0: float, size: Size, generator: dict[str, Any]) -> dict[str, Any]:
    """`structures.generator` as a user would write it: the host's fcc cell; an alloy by its `occupation`."""
    settings = {"prototype": "fcc", "a": round(a0, 4), "cubic": True,
                "supercell": [size.supercell] * 3, **generator}
    if system.swap:
        other = next(e for e in system.elements if e != system.host)
        settings |= {"formula": system.host, "occupation": {system.host: 1 - system.swap, other: system.swap}}
    return settings


def starting_structures(system: System, a0: float, size: Size, generator: dict[str, Any], seed: int) -> list[Atoms]:
    """What the product's generator makes from `generator_settings` (the loop's own starting set for `seed`)."""
    settings = {"generator": generator_settings(system, a0, size, generator)}
    return [atoms_from_dict(s) for s in initial_structures(settings, list(system.elements), seed)]


# --- measuring a potential -----------------------------------------------------------------------------------


def evaluate(potential: Path, reference: dict[str, float], frames: list[Atoms], eos_cell: Atoms) -> dict[str, Any]:
    """Test force RMSE (meV/A, per component) and energy RMSE (meV/atom; the fit's reference energies added
    back), overall and per category; and the potential's a0 and bulk modulus against EMT's."""
    calc = PyACECalculator(str(potential))
    errors: dict[str, dict[str, list[float]]] = {}
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calc
        shift = sum(reference[s] for s in atoms.get_chemical_symbols())
        de = (atoms.get_potential_energy() + shift - frame.get_potential_energy()) / len(atoms)
        df = (atoms.get_forces() - frame.get_forces()).ravel()
        for key in ("all", frame.info["category"]):
            bucket = errors.setdefault(key, {"de": [], "df": []})
            bucket["de"].append(de)
            bucket["df"].extend(df)
    rmse = {key: {"force_rmse_mev_a": 1e3 * float(np.sqrt(np.mean(np.square(b["df"])))),
                  "energy_rmse_mev_atom": 1e3 * float(np.sqrt(np.mean(np.square(b["de"]))))}
            for key, b in errors.items()}
    return {**rmse.pop("all"), "by_category": rmse, "eos": eos_errors(calc, eos_cell)}


def eos_errors(calc: PyACECalculator, cell: Atoms) -> dict[str, float | None]:
    """a0 and bulk modulus of the potential against EMT's, in % (None when its E(V) has no minimum)."""
    result = {}
    for name, calculator in (("potential", calc), ("emt", EMT())):
        volumes, energies = [], []
        for s in np.linspace(0.97, 1.03, 7):
            atoms = cell.copy()
            atoms.set_cell(cell.cell * s, scale_atoms=True)
            atoms.calc = calculator
            volumes.append(atoms.get_volume())
            energies.append(atoms.get_potential_energy())
        try:
            v0, _, b = EquationOfState(volumes, energies).fit()
        except (RuntimeError, ValueError):
            return {"a0_error_pct": None, "bulk_modulus_error_pct": None}
        if not min(volumes) <= v0 <= max(volumes):
            return {"a0_error_pct": None, "bulk_modulus_error_pct": None}
        result[name] = (v0, b)
    (v_pot, b_pot), (v_emt, b_emt) = result["potential"], result["emt"]
    return {"a0_error_pct": 100 * ((v_pot / v_emt) ** (1 / 3) - 1), "bulk_modulus_error_pct": 100 * (b_pot / b_emt - 1)}


# --- the loop ----------------------------------------------------------------------------------------------


def loop_input(system: System, a0: float, size: Size, seed: int, selection: str, folder: Path,
               training: dict[str, Any] = TRAINING) -> Path:
    """The input.yaml a user would write for this benchmark."""
    config = {
        "project": {"name": f"{system.name}_seed{seed}"},
        "elements": list(system.elements),
        "structures": {"generator": generator_settings(system, a0, size, size.generator)},
        "dft": {"engine": "emt"},
        "training": training,
        "exploration": size.exploration,
        "selection": {"method": selection, "max_per_generation": size.max_per_generation},
        "loop": {"max_generations": size.max_generations, "dft_budget": size.dft_budget, "seed": seed},
        "assess": {"enabled": False},
    }
    path = folder / "input.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class LoopRefused(Exception):
    """`mlip-auto run` exited 2: the input was refused and nothing ran (its one-paragraph message)."""


def run_loop(input_path: Path) -> tuple[Path, float]:
    """`mlip-auto run input.yaml --site threads`; the project directory and the wall time."""
    start = time.monotonic()
    result = subprocess.run([str(MLIP_AUTO), "run", str(input_path), "--site", "threads"],
                            capture_output=True, text=True, check=False)
    if result.returncode == 2:  # refused before it started (a bad input or a failed pre-flight check)
        raise LoopRefused(" ".join((result.stdout + result.stderr).split()))
    if result.returncode != 0:
        raise SystemExit(f"the loop failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    name = yaml.safe_load(input_path.read_text())["project"]["name"]
    return input_path.parent / name, time.monotonic() - start


def loop_generations(project: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per generation: labels it was trained on, potential, reference energies, validation RMSEs; and the
    run's totals (labels, MD steps its walkers ran, why it stopped), all read from the event log."""
    with EventStore.open_existing(project / "events.sqlite") as store:
        state = fold(store.events())
    trains = {t.generation: t.result for t in state.tasks.values() if t.kind == "train" and t.status == "completed"}
    generations = []
    for g, model in sorted(state.models.items()):
        metrics = model["metrics"]
        generations.append({
            "generation": g, "labels": model["n_train"] + model["n_validation"],
            "potential": str(project / model["potential"]),
            "reference": trains[g]["reference_energy"]["energies"],
            "validation_force_rmse_mev_a": metrics["validation"]["force_rmse_mev_a"],
            "fixed_validation_force_rmse_mev_a": metrics.get("fixed_validation", {}).get("force_rmse_mev_a"),
        })
    md_steps = sum(t.result["steps_done"] for t in state.tasks.values()
                   if t.kind == "explore" and t.status == "completed")
    totals = {"labels": len(state.labels_done()), "md_steps": md_steps, "stop_reason": state.reason,
              "training": state.config["training"]}
    return generations, totals


# --- random picks ------------------------------------------------------------------------------------------


def fit_frames(frames: list[Atoms], training: dict[str, Any], elements: list[str], workdir: Path) -> dict[str, Any]:
    """`autopipe.apps.train.fit` on `frames`, written as the core writes its dataset."""
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = workdir / "dataset.extxyz"
    ase.io.write(dataset, frames, format="extxyz")
    start = time.monotonic()
    result = fit(str(dataset), training, elements, str(workdir / "fit"))
    return {"potential": result["potential"], "reference": result["reference_energy"]["energies"],
            "fit_s": time.monotonic() - start}


def random_frames(candidates: list[Atoms], system: System, seed: int) -> list[Atoms]:
    """The pool in a seeded random order, each frame with a stable uuid (so nested picks split alike)."""
    order = np.random.default_rng(seed).permutation(len(candidates))
    frames = []
    for index in order:
        frame = candidates[index].copy()
        frame.calc = candidates[index].calc
        frame.info.update(uuid=str(uuid.uuid5(NAMESPACE, f"{system.name}/{index}")), config_type="random",
                          generation=0)
        frames.append(frame)
    return frames


# --- summary -----------------------------------------------------------------------------------------------


def summarise(loop: list[dict[str, Any]], random: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    """The numbers of docs/benchmarks.md for one system and seed."""
    converged = random[-1]["force_rmse_mev_a"]
    target = CLOSE_ENOUGH * converged
    random_needs = next((r["labels"] for r in random if r["force_rmse_mev_a"] <= target), None)
    loop_needs = next((g["labels"] for g in loop if g["force_rmse_mev_a"] <= target), None)
    final = loop[-1]
    same = next(r for r in random if r["labels"] == final["labels"])
    return {
        "random_converged_force_rmse_mev_a": converged, "random_converged_labels": random[-1]["labels"],
        "labels_random_needs": random_needs, "labels_loop_needs": loop_needs,
        "label_ratio": random_needs / loop_needs if random_needs and loop_needs else None,
        "loop_final_labels": final["labels"],
        "loop_final_force_rmse_mev_a": final["force_rmse_mev_a"],
        "loop_final_energy_rmse_mev_atom": final["energy_rmse_mev_atom"],
        "random_same_labels_force_rmse_mev_a": same["force_rmse_mev_a"],
        "random_same_labels_energy_rmse_mev_atom": same["energy_rmse_mev_atom"],
        "loop_final_eos": final["eos"],
        "random_same_labels_eos": same["eos"],
        "loop_max_force_rmse_mev_a": max(g["force_rmse_mev_a"] for g in loop),
        "best_generation": min(loop, key=lambda g: g["force_rmse_mev_a"])["generation"],
        "md_steps_per_label": totals["md_steps"] / totals["labels"],
        "stop_reason": totals["stop_reason"],
    }


def run_case(system: System, seed: int, size: Size, selection: str, a0: float, test: list[Atoms],
             candidates: list[Atoms], workdir: Path, training: dict[str, Any] = TRAINING) -> dict[str, Any]:
    """The loop and random picks for one system and seed, each potential measured on the test set."""
    eos_cell = ideal_cell(system, a0, size.supercell, np.random.default_rng(0))
    folder = workdir / f"{system.name}_seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    project, loop_wall = run_loop(loop_input(system, a0, size, seed, selection, folder, training))
    generations, totals = loop_generations(project)
    for g in generations:
        g.update(evaluate(Path(g["potential"]), g["reference"], test, eos_cell))
    training, elements = totals.pop("training"), list(system.elements)  # the loop's expanded settings
    sizes = sorted({g["labels"] for g in generations} | set(size.random_grid))
    shuffled = random_frames(candidates, system, seed)
    random, unfittable = [], []
    for n in sizes:
        try:
            fitted = fit_frames(shuffled[:n], training, elements, folder / "random" / f"n{n:03d}")
        except TrainingFailure as err:  # e.g. 10 alloy cells: fewer atoms of an element than functions
            unfittable.append({"labels": n, "kind": err.kind, "message": str(err).splitlines()[0]})
            continue
        random.append({"labels": n, "fit_s": fitted["fit_s"],
                       **evaluate(Path(fitted["potential"]), fitted["reference"], test, eos_cell)})
    return {"system": system.name, "seed": seed, "selection": selection, "loop_wall_s": loop_wall,
            "a0": a0, "training": training, "loop": generations, "random": random, "random_unfittable": unfittable,
            "totals": totals,
            "summary": summarise(generations, random, totals)}


def nonlinear_comparison(case: dict[str, Any], system: System, size: Size, test: list[Atoms],
                         candidates: list[Atoms], workdir: Path, iterations: int) -> list[dict[str, Any]]:
    """Linear against nonlinear Pacemaker fits (radial coefficients fitted too) on the same data: the loop's
    final dataset and random picks of the same size. Same basis size and loss weights as the loop; each
    with its mode's ZBL core and without one, since where the core starts decides the hot-MD errors."""
    a0 = case["a0"]
    eos_cell = ideal_cell(system, a0, size.supercell, np.random.default_rng(0))
    training = case["training"]
    nonlinear = {**training, "mode": "nonlinear", "ndensity": None, "fs_parameters": None,
                 "max_iterations": iterations}
    variants = {  # the core: linear mode's 0.5 A below the data, pacemaker's at the data, or none
        "linear": training,
        "linear, no core": {**training, "repulsion": "none"},
        "nonlinear, Finnis-Sinclair": nonlinear,
        "nonlinear, Finnis-Sinclair, no core": {**nonlinear, "repulsion": "none"},
        "nonlinear, linear embedding, no core": {**training, "mode": "nonlinear", "max_iterations": iterations,
                                                 "repulsion": "none"},
    }
    project = workdir / f"{system.name}_seed{case['seed']}" / f"{system.name}_seed{case['seed']}"
    last = case["loop"][-1]["generation"]
    loop_data = ase.io.read(project / "generations" / f"gen_{last:03d}" / "train" / "dataset.extxyz", ":")
    n = len(loop_data)
    datasets = {"loop": loop_data, "random": random_frames(candidates, system, case["seed"])[:n]}
    rows = []
    for data_name, frames in datasets.items():
        for name, settings in variants.items():
            fitted = fit_frames(frames, settings, list(system.elements),
                                workdir / "nonlinear" / f"{data_name}_{name.replace(' ', '_').replace(',', '')}")
            rows.append({"data": data_name, "labels": n, "fit": name, "fit_s": fitted["fit_s"],
                         **evaluate(Path(fitted["potential"]), fitted["reference"], test, eos_cell)})
    return rows


# --- output ------------------------------------------------------------------------------------------------


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per system: test force and energy RMSE against labels, loop (per seed) and random."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for system in sorted({c["system"] for c in results["cases"]}):
        cases = [c for c in results["cases"] if c["system"] == system]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for key, ax, unit in (("force_rmse_mev_a", axes[0], "test force RMSE (meV/A)"),
                              ("energy_rmse_mev_atom", axes[1], "test energy RMSE (meV/atom)")):
            for i, case in enumerate(cases):
                color = f"C{i}"
                ax.plot([g["labels"] for g in case["loop"]], [g[key] for g in case["loop"]], "o-", color=color,
                        label=f"loop, seed {case['seed']}")
                ax.plot([r["labels"] for r in case["random"]], [r[key] for r in case["random"]], "s--",
                        color=color, alpha=0.6, label=f"random, seed {case['seed']}")
            ax.set_xlabel("labels (EMT calls)")
            ax.set_ylabel(unit)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{system}: loop ({cases[0]['selection']}) vs random picks, held-out EMT test set")
        fig.tight_layout()
        path = out / f"sample_efficiency_{system}_{cases[0]['selection']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def fmt(value: float | None, digits: int = 1, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def eos_text(eos: dict[str, float | None]) -> str:
    """a0 and B errors, or "no minimum" when the potential's E(V) has none within +-3 % of a0."""
    if eos["a0_error_pct"] is None:
        return "no minimum"
    return f"{eos['a0_error_pct']:.2f} / {eos['bulk_modulus_error_pct']:.1f}"


def seed_means(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's curves averaged over its seeds, and the labels each needs to come within 5 % of random's
    mean at its largest N. Random at the sizes every seed fitted; the loop at every label count from its
    largest first generation on, each seed at its newest potential by then (a stopped loop keeps its last)."""
    common = set.intersection(*[{r["labels"] for r in case["random"]} for case in cases])
    random = {n: float(np.mean([next(r["force_rmse_mev_a"] for r in case["random"] if r["labels"] == n)
                                for case in cases])) for n in sorted(common)}

    def loop_at(case: dict[str, Any], n: int) -> float:
        return [g for g in case["loop"] if g["labels"] <= n][-1]["force_rmse_mev_a"]

    first = max(case["loop"][0]["labels"] for case in cases)
    last = max(case["loop"][-1]["labels"] for case in cases)
    loop = {n: float(np.mean([loop_at(case, n) for case in cases])) for n in range(first, last + 1)}
    target = CLOSE_ENOUGH * random[max(random)]
    random_needs = next((n for n, f in random.items() if f <= target), None)
    loop_needs = next((n for n, f in loop.items() if f <= target), None)
    return {"random_converged_force_rmse_mev_a": random[max(random)], "random_converged_labels": max(random),
            "labels_random_needs": random_needs, "labels_loop_needs": loop_needs,
            "loop_final_force_rmse_mev_a": loop[last], "loop_final_labels": last,
            "random_best_force_rmse_mev_a": min(random.values())}


def tables(results: dict[str, Any]) -> str:
    """The markdown tables of docs/benchmarks.md."""
    lines = [
        ("| system | seed | loop stop | loop labels | loop F / E | random F / E at same labels | random converged F "
         "(labels) | labels to within 5 %: random / loop | worst loop generation F | a0 / B error % loop; random "
         "| MD steps per label |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        s = case["summary"]
        lines.append(
            f"| {case['system']} | {case['seed']} | {s['stop_reason']} | {s['loop_final_labels']} | "
            f"{fmt(s['loop_final_force_rmse_mev_a'])} / {fmt(s['loop_final_energy_rmse_mev_atom'])} | "
            f"{fmt(s['random_same_labels_force_rmse_mev_a'])} / {fmt(s['random_same_labels_energy_rmse_mev_atom'])} | "
            f"{fmt(s['random_converged_force_rmse_mev_a'])} ({s['random_converged_labels']}) | "
            f"{s['labels_random_needs'] or 'never'} / {s['labels_loop_needs'] or 'never'} | "
            f"{fmt(s['loop_max_force_rmse_mev_a'])} | {eos_text(s['loop_final_eos'])}; "
            f"{eos_text(s['random_same_labels_eos'])} | {fmt(s['md_steps_per_label'])} |"
        )
    systems = {case["system"]: [c for c in results["cases"] if c["system"] == case["system"]]
               for case in results["cases"]}
    lines += ["", "Averaged over seeds (test force RMSE, meV/A):", "",
              ("| system | seeds | random at its largest N | random's best | loop, all seeds stopped | "
               "labels to within 5 %: random / loop |"), "|---|---|---|---|---|---|"]
    for name, cases in systems.items():
        m = seed_means(cases)
        lines.append(
            f"| {name} | {len(cases)} | {fmt(m['random_converged_force_rmse_mev_a'])} ({m['random_converged_labels']}) | "
            f"{fmt(m['random_best_force_rmse_mev_a'])} | {fmt(m['loop_final_force_rmse_mev_a'])} "
            f"({m['loop_final_labels']}) | {m['labels_random_needs'] or 'never'} / {m['labels_loop_needs'] or 'never'} |"
        )
    present = [c for c in CATEGORIES if all(c in case["loop"][-1]["by_category"] for case in results["cases"])]
    lines += ["", "Test force RMSE (meV/A) per category at the loop's final label count, loop / random:", "",
              "| system | seed | labels | " + " | ".join(present) + " |", "|---|---|---|" + "---|" * len(present)]
    for case in results["cases"]:
        final = case["loop"][-1]
        same = next(r for r in case["random"] if r["labels"] == final["labels"])
        cells = [f"{fmt(final['by_category'][c]['force_rmse_mev_a'])} / {fmt(same['by_category'][c]['force_rmse_mev_a'])}"
                 for c in present]
        lines.append(f"| {case['system']} | {case['seed']} | {final['labels']} | " + " | ".join(cells) + " |")
    if results.get("refused"):
        lines += ["", "Loops `mlip-auto run` refused (exit 2, nothing ran):", ""]
        lines += [f"- {r['system']} seed {r['seed']}: {r['message']}" for r in results["refused"]]
    if results.get("nonlinear"):
        lines += ["", "| data | labels | fit | test F meV/A | test E meV/atom | a0 / B error % | fit s |",
                  "|---|---|---|---|---|---|---|"]
        for row in results["nonlinear"]:
            lines.append(
                f"| {row['data']} | {row['labels']} | {row['fit']} | {fmt(row['force_rmse_mev_a'])} | "
                f"{fmt(row['energy_rmse_mev_atom'])} | {eos_text(row['eos'])} | {row['fit_s']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--selection", default=SelectionSettings().method, choices=get_args(Method),
                        help="selection.method of the loop (default: the product's)")
    parser.add_argument("--functions", type=int, default=TRAINING["functions_per_element"],
                        help="functions_per_element of the linear basis (the quickstart's: 30)")
    parser.add_argument("--accuracy", default=TRAINING["accuracy"], choices=["fast", "standard", "precise"],
                        help="training.accuracy: the radial and angular basis (the quickstart's: fast)")
    parser.add_argument("--lean-start", action="store_true",
                        help="8 starting structures (15 for the alloy) instead of 22; random measured from 10 labels")
    parser.add_argument("--cold-rattle", action="store_true",
                        help="the lean start's rattled copies all at 0.05 A (the generator's default before "
                             "2026-11-30) instead of the product's default spread")
    parser.add_argument("--random-to", type=int, default=None,
                        help="random picks up to this many labels (default: the loop's budget); the last is "
                             "random's 'converged' error")
    parser.add_argument("--surfaces", action="store_true",
                        help="a rattled 4-layer (100) slab in the loop's starting set and in random's pool (the "
                             "test set's slab is (111))")
    parser.add_argument("--no-end-members", action="store_true",
                        help="the alloy's starting set and pool without its pure end members "
                             "(structures.generator.end_members: false)")
    parser.add_argument("--continue-walkers", action="store_true",
                        help="exploration.continue_walkers: each walker continues its predecessor's trajectory")
    parser.add_argument("--per-generation", type=int, default=None,
                        help="selection.max_per_generation of the loop (default: the product's)")
    parser.add_argument("--quick", action="store_true", help="a smoke version: 4-atom cells, 2 generations")
    parser.add_argument("--nonlinear", action="store_true",
                        help="also fit nonlinear Pacemaker (tensorpot) on the first system and seed")
    parser.add_argument("--iterations", type=int, default=100, help="max_iterations of the nonlinear fits")
    parser.add_argument("--workdir", type=Path, help="where the projects and fits go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("docs/sample_efficiency"),
                        help="results_<method>.json and the PNGs go here")
    parser.add_argument("--report", type=Path, help="print the tables of this results file and stop")
    args = parser.parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        print(tables(results))
        return results
    size = QUICK if args.quick else FULL
    if args.lean_start:
        size = replace(size, random_grid=tuple(sorted({*LEAN_GRID, *size.random_grid})))
    if args.per_generation:
        size = replace(size, max_per_generation=args.per_generation)
    if args.random_to:
        extra = range(size.dft_budget + 20, args.random_to + 1, 20)
        size = replace(size, random_grid=tuple(sorted({n for n in size.random_grid if n <= args.random_to}
                                                      | {*extra, args.random_to})))
    # what --surfaces and --no-end-members change, in the pool's generator and in the loop's starting set
    starting_extra = {**(SLAB if args.surfaces else {}), **({"end_members": False} if args.no_end_members else {})}
    size = replace(size, generator={**size.generator, **starting_extra})
    training = {**TRAINING, "functions_per_element": args.functions, "accuracy": args.accuracy}
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = (args.workdir or Path(tmp)).absolute()
        results: dict[str, Any] = {"command": " ".join(["benchmarks/sample_efficiency.py", *(argv or sys.argv[1:])]),
                                   "quick": args.quick, "cases": [], "refused": [], "nonlinear": []}
        for name in args.systems:
            system = SYSTEMS[name]
            sized = replace(size, generator=lean_start(system, args.cold_rattle)) if args.lean_start else size
            if args.continue_walkers:
                sized = replace(sized, exploration={**sized.exploration, "continue_walkers": True})
            sized = replace(sized, generator={**sized.generator, **starting_extra})
            a0 = emt_a0(system, size)
            test, candidates = held_out_set(system, a0, size), pool(system, a0, size)
            print(f"{name}: a0 {a0:.4f} A, {len(test)} test frames, pool of {len(candidates)}", flush=True)
            for seed in args.seeds:
                try:
                    case = run_case(system, seed, sized, args.selection, a0, test, candidates, workdir, training)
                except LoopRefused as refusal:
                    results["refused"].append({"system": name, "seed": seed, "message": str(refusal)})
                    print(f"  seed {seed}: refused: {refusal}", flush=True)
                    continue
                results["cases"].append(case)
                print(f"  seed {seed}: {json.dumps(case['summary'])}", flush=True)
                if args.nonlinear and not results["nonlinear"]:
                    results["nonlinear"] = nonlinear_comparison(case, system, size, test, candidates, workdir,
                                                                args.iterations)
        results["wall_s"] = time.monotonic() - started
        (args.out / f"results_{args.selection}.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out)
    print(tables(results))
    print(f"wall time {results['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
