"""How long `mlip-auto status` takes on a large project: 10,000 structures, 100,000 events.

Builds a synthetic project (ten generations of 1,000 labelled structures, their DFT tasks, 4,000 walkers per
generation, each with a gamma log), then times the report: reading the log and the database, the
figures, the Altair charts and the HTML. The Vega bundle is cached after the first report; both the cold
and the warm time are shown.

    .venv/bin/python benchmarks/bench_report.py [--structures 10000] [--events 100000] [--dir /path/on/the/disk]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import ase.db
import numpy as np
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from autopipe.events import EVENTS_FILE, EventStore
from autopipe.report import build_report, vega_bundle
from autopipe.report_figures import collect

GENERATIONS = 10
CONFIG = {"dft": {"command": "srun -n 4 pw.x"}, "exploration": {"gamma_select": 2.0, "gamma_halt": 20.0}}


def write_structures(path: Path, n: int) -> None:
    """n labelled 8-atom AlNi cells, spread over the generations, in one transaction."""
    rng = np.random.default_rng(0)
    cell = bulk("Al", "fcc", a=4.05, cubic=True).repeat((1, 1, 2))
    cell.symbols[::2] = "Ni"
    with ase.db.connect(str(path)) as db:
        for i in range(n):
            atoms = cell.copy()
            atoms.rattle(0.05, seed=i)
            atoms.calc = SinglePointCalculator(
                atoms, energy=-3.0 * len(atoms), forces=rng.normal(size=(8, 3))
            )
            generation = i * GENERATIONS // n
            db.write(
                atoms,
                uuid=f"s-{i}",
                config_type="initial" if generation == 0 else "md",
                generation=generation,
                labelled=True,
            )


def generation_events(g: int, n_labels: int, n_walkers: int, project: Path) -> list[tuple[str, dict]]:
    """One generation's worth of events: DFT tasks, a model, walkers, a selection."""
    out: list[tuple[str, dict]] = [("state.entered", {"state": "DFT", "generation": g, "reason": "next"})]
    uuids = [f"s-{g}-{i}" for i in range(n_labels)]
    out.append(("structures.added", {"generation": g, "config_type": "md", "uuids": uuids}))
    for i, uuid in enumerate(uuids):
        task = {"key": f"dft-{g}-{i}", "kind": "dft", "generation": g}
        out.append(("task.submitted", {**task, "label": uuid}))
        out.append(
            ("task.completed", {**task, "result": {"energy": -24.0, "engine": "qe"}, "wall_time": 60.0})
        )
    out.append(("dataset.extended", {"generation": g, "n_new": n_labels, "n_total": n_labels * (g + 1)}))
    out.append(("state.entered", {"state": "TRAIN", "generation": g, "reason": "labels done"}))
    metrics = {"validation": {"force_rmse_mev_a": 80.0 / (g + 1), "energy_rmse_mev_atom": 5.0 / (g + 1)}}
    out.append(
        (
            "model.trained",
            {
                "generation": g,
                "potential": f"potentials/gen_{g:03d}.yaml",
                "active_set": f"potentials/gen_{g:03d}.asi",
                "metrics": metrics,
                "n_train": 900,
                "n_validation": 100,
            },
        )
    )
    out.append(("state.entered", {"state": "EXPLORE", "generation": g, "reason": "trained"}))
    for w in range(n_walkers):
        md = f"generations/gen_{g:03d}/explore/walker_{w:04d}/md"
        task = {"key": f"explore-{g}-{w}", "kind": "explore", "generation": g}
        out.append(("task.submitted", {**task, "label": f"walker {w}"}))
        out.append(
            (
                "task.completed",
                {
                    **task,
                    "wall_time": 30.0,
                    "result": {
                        "status": "finished",
                        "max_gamma": 3.0,
                        "n_candidates": 1,
                        "candidates": f"{md}/candidates.extxyz",
                    },
                },
            )
        )
        (project / md).mkdir(parents=True)
        gammas = np.random.default_rng(w).lognormal(mean=1.0 - 0.1 * g, sigma=0.6, size=50)
        (project / md / "gamma.csv").write_text(
            "step,max_gamma,energy_per_atom,temperature_K\n"
            + "".join(f"{10 * s},{v:.4f},-3.0,600\n" for s, v in enumerate(gammas))
        )
    out.append(
        (
            "exploration.finished",
            {
                "generation": g,
                "n_walkers": n_walkers,
                "n_candidates": n_walkers,
                "max_gamma": 30.0,
                "halted": 0,
            },
        )
    )
    out.append(("state.entered", {"state": "SELECT", "generation": g, "reason": "explored"}))
    return out


def build_project(project: Path, n_structures: int, n_events: int) -> int:
    """The synthetic project; returns how many events its log holds."""
    project.mkdir()
    write_structures(project / "structures.db", n_structures)
    n_labels = n_structures // GENERATIONS
    n_walkers = max(0, (n_events // GENERATIONS - 2 * n_labels - 10) // 2)
    with EventStore(project / EVENTS_FILE) as store:
        store.append(
            "run.started",
            {"config_hash": "0" * 64, "config": CONFIG, "autopipe_version": "bench", "site": "bench"},
        )
        for g in range(GENERATIONS):
            store.append_many(generation_events(g, n_labels, n_walkers, project))
        return store.last().seq


def timed(func) -> tuple[float, float, object]:
    """Wall time and CPU time of one call (CPU time shows the cost when other work shares the cores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def best(func, repeat: int = 3) -> str:
    runs = [timed(func)[:2] for _ in range(repeat)]
    return f"{min(w for w, _ in runs):.2f} s wall, {min(c for _, c in runs):.2f} s CPU (best of {repeat})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # start with no cached Vega bundle
        project = Path(tmp) / "project"
        build_s, _, n_events = timed(lambda: build_project(project, args.structures, args.events))
        print(
            f"synthetic project: {args.structures:,} structures, {n_events:,} events (built in {build_s:.0f} s)"
        )
        print(f"Vega bundle, first report only (then cached): {timed(vega_bundle)[0]:.2f} s")
        print(f"figures (log, structures.db, gamma logs):     {best(lambda: collect(project))}")
        print(f"whole report, bundle cached:                  {best(lambda: build_report(project))}")
        size = (project / "report" / "status.html").stat().st_size / 1e6
        print(f"HTML size: {size:.1f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
