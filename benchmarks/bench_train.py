"""How long one TRAIN task takes as the dataset grows, in linear and nonlinear mode.

Each point is a full `autopipe.apps.train.fit` call as the workflow makes it: dataset ingestion, the fit,
pace_yaml2yace, pace_activeset and the metrics. Data: EMT-labelled 32-atom fcc Al cells (lattice +-3 %,
rattled 0.1 A). The nonlinear backend is tensorpot when installed (else pyace: use tiny settings).

    .venv/bin/python benchmarks/bench_train.py [--sizes 10 25 50 100] [--accuracy standard]
        [--nonlinear-accuracy fast] [--iterations 50] [--modes linear nonlinear]
"""

import argparse
import tempfile
import uuid
from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from autopipe.apps.train import TrainingSettings, fit


def labelled_cells(n: int) -> list:
    """`n` EMT-labelled Al cells written as the core writes them."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        atoms = bulk("Al", "fcc", a=4.05 * rng.uniform(0.97, 1.03), cubic=True).repeat(2)
        atoms.rattle(0.1, seed=i)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        atoms.info.update(uuid=str(uuid.UUID(int=i)), config_type="md", generation=0)
        frames.append(atoms)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100], help="structures per fit")
    parser.add_argument(
        "--modes", nargs="+", default=["linear", "nonlinear"], choices=["linear", "nonlinear"]
    )
    parser.add_argument("--accuracy", default="standard", help="preset of the linear fits")
    parser.add_argument("--nonlinear-accuracy", default="fast", help="preset of the nonlinear fits")
    parser.add_argument("--iterations", type=int, default=50, help="max_iterations of the nonlinear fits")
    args = parser.parse_args()

    settings = {
        "linear": TrainingSettings(accuracy=args.accuracy),
        "nonlinear": TrainingSettings(
            mode="nonlinear", accuracy=args.nonlinear_accuracy, max_iterations=args.iterations
        ),
    }
    frames = labelled_cells(max(args.sizes))
    print(
        f"{'mode':<10}{'backend':<20}{'functions':>10}{'structures':>11}{'atoms':>7}{'fit s':>8}{'val F meV/A':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            for size in args.sizes:
                dataset = Path(tmp) / f"d{size}.extxyz"
                ase.io.write(dataset, frames[:size], format="extxyz")
                result = fit(
                    str(dataset), settings[mode].model_dump(mode="json"), ["Al"], f"{tmp}/{mode}{size}"
                )
                force = result["metrics"]["validation"]["force_rmse_mev_a"]
                force_text = f"{force:.1f}" if force is not None else "(no val.)"
                print(
                    f"{mode:<10}{result['backend']:<20}{result['n_functions']:>10}{size:>11}{size * 32:>7}"
                    f"{result['wall_time']:>8.1f}{force_text:>13}"
                )


if __name__ == "__main__":
    main()
