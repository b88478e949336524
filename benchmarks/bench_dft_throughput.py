"""How close N independent QE labels come to keeping every core busy through Parsl's local executor.

Labels each structure once serially (in this process), then all of them through a HighThroughputExecutor
(LocalProvider, 127.0.0.1, `--workers` workers, one pw.x each) after a warm-up task, and compares the wall
time with the sum of the serial times: efficiency = serial sum / (parallel wall x workers).

    .venv/bin/python benchmarks/bench_dft_throughput.py [--labels 6] [--workers 2]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import parsl
from ase.build import bulk
from parsl import python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

from autopipe.apps.dft import label
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.structures import atoms_to_dict


@python_app(executors=["dft"])
def label_app(structure: dict, settings: dict, workdir: str) -> dict:
    from autopipe.apps.dft import label  # apps travel by value: imports go inside

    return label(structure, settings, workdir)


@python_app(executors=["dft"])
def warm_up() -> int:
    """Waits out the executor's start-up (first strategy tick, worker pool launch) before timing."""
    return 0


def structures(count: int) -> list[dict]:
    """Rattled 8-atom silicon cells: about 3-4 s each with the settings below, no two alike."""
    cells = []
    for seed in range(count):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05, seed=seed)
        cells.append(atoms_to_dict(atoms))
    return cells


def parsl_config(workers: int, run_dir: Path) -> Config:
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{venv_bin}:{os.environ['PATH']}"  # the interchange and workers come from the venv
    executor = HighThroughputExecutor(
        label="dft",
        address="127.0.0.1",
        max_workers_per_node=workers,
        cores_per_worker=1,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
    )
    return Config(executors=[executor], run_dir=str(run_dir), strategy_period=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=6, help="number of independent labels")
    parser.add_argument("--workers", type=int, default=2, help="Parsl workers (one pw.x process each)")
    args = parser.parse_args()

    settings = DFTSettings(pseudopotentials={"Si": "Si.pz-vbc.UPF"}, ecutwfc=20, kspacing=0.6)
    settings = settings.model_dump(mode="json")
    cells = structures(args.labels)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        serial = []
        for i, cell in enumerate(cells):
            result = label(cell, settings, str(tmp / f"serial_{i}"))
            assert result["status"] == "ok", result["failure"]
            serial.append(result["wall_time"])

        with parsl.load(parsl_config(args.workers, tmp / "runinfo")):
            warm_up().result()
            start = time.perf_counter()
            futures = [label_app(cell, settings, str(tmp / f"parsl_{i}")) for i, cell in enumerate(cells)]
            results = [f.result() for f in futures]
            wall = time.perf_counter() - start
    assert all(r["status"] == "ok" for r in results)

    total = sum(serial)
    print(f"{args.labels} QE labels (rattled Si8, ecutwfc 20 Ry, 2x2x2 k), {args.workers} Parsl HTEX workers")
    print(f"serial pw.x times: {', '.join(f'{t:.2f}' for t in serial)} s; sum {total:.2f} s")
    parallel = ", ".join(f"{r['wall_time']:.2f}" for r in results)
    print(f"through Parsl: wall {wall:.2f} s; pw.x times inside the workers {parallel} s")
    print(f"speed-up {total / wall:.2f}x on {args.workers} workers; efficiency {total / (wall * args.workers):.0%}")


if __name__ == "__main__":
    main()
