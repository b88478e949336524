"""MD steps per second of the two exploration engines on one potential: ASE vs LAMMPS through fix external.

Each point is a full walker (`run_walker`, NVT at 300 K, gamma checked every 10 steps, nothing dumped) on fcc Al
supercells of 32, 256 and 2048 atoms. The rate is marginal: the difference between a run of N and of 3N steps,
so loading the potential and starting LAMMPS do not count. The potential is a linear ACE fit
(`autopipe.apps.train.fit`, accuracy `fast`) to EMT-labelled 32-atom cells, with its active set, so gamma is
computed at every step by both engines, as in exploration.

    .venv/bin/python benchmarks/bench_md_engines.py [--sizes 32 256 2048] [--engines ase lammps]
"""

import argparse
import tempfile
from pathlib import Path

import ase.io
from ase.build import bulk
from bench_train import labelled_cells

from autopipe.apps.explore import run_walker
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.structures import atoms_to_dict
from autopipe.apps.train import TrainingSettings, fit

#: Base step count per size, chosen so that each run takes seconds on one core.
STEPS = {32: 300, 256: 60, 2048: 10}
REPEATS = {32: 2, 256: 4, 2048: 8}  # 4-atom cubic cell repeated n x n x n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 2048], choices=sorted(STEPS))
    parser.add_argument("--engines", nargs="+", default=["ase", "lammps"], choices=["ase", "lammps"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "data.extxyz"
        ase.io.write(dataset, labelled_cells(20), format="extxyz")
        model = fit(str(dataset), TrainingSettings(accuracy="fast").model_dump(mode="json"), ["Al"], f"{tmp}/fit")
        print(f"{'atoms':>6}{'engine':>8}{'path':>14}{'steps':>7}{'steps/s':>10}{'atom-steps/s':>14}")
        for size in args.sizes:
            structure = atoms_to_dict(bulk("Al", "fcc", a=4.05, cubic=True).repeat(REPEATS[size]))
            for engine in args.engines:
                times, result = {}, {}
                for steps in (STEPS[size], 3 * STEPS[size]):
                    opts = ExplorationSettings(engine=engine, steps=steps, gamma_select=1e6, gamma_halt=2e6)
                    result = run_walker(structure, model["potential"], model["active_set"],
                                        opts.model_dump(mode="json"), 300.0, 1, f"{tmp}/{engine}_{size}_{steps}")
                    assert result["status"] == "finished", result
                    times[steps] = result["wall_time"]
                rate = 2 * STEPS[size] / (times[3 * STEPS[size]] - times[STEPS[size]])
                print(f"{size:>6}{engine:>8}{result.get('path', '-'):>14}{3 * STEPS[size]:>7}{rate:>10.1f}"
                      f"{rate * size:>14.0f}")


if __name__ == "__main__":
    main()
