"""Fixtures shared by several test modules."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pyace import create_multispecies_basis_config
from pyace.linearacefit import LinearACEDataset, LinearACEFit

REPO = Path(__file__).resolve().parents[1]
SLURM_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "munged")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[Path]:
    """A real one-node SLURM cluster, started and stopped by the repository's own script.

    Yields the cluster's slurm.conf (exported as SLURM_CONF for the session). Skipped on a machine without
    SLURM, except in CI (CI=true), where a cluster that cannot be started fails the tests.
    """
    missing = [p for p in SLURM_PROGRAMS if not (shutil.which(p) or Path("/usr/sbin", p).exists())]
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} missing); .ci/run installs it")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "AUTOPIPE_SLURM_DIR": str(state)}
    script = REPO / "scripts" / "slurm-cluster.sh"
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, f"scripts/slurm-cluster.sh start failed:\n{started.stderr}"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield state / "slurm.conf"
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = previous
        stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert stopped.returncode == 0, f"scripts/slurm-cluster.sh stop failed:\n{stopped.stderr}"


BASIS = {
    "deltaSplineBins": 0.001,
    "elements": ["Al"],
    "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1], "ndensity": 1}},
    "bonds": {"ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": 5.0, "dcut": 0.01}},
    "functions": {
        "number_of_functions_per_element": 100,
        "ALL": {"nradmax_by_orders": [15, 3, 2, 1], "lmax_by_orders": [0, 3, 2, 1]},
    },
}


def emt_training_set(n_cells: int = 30) -> pd.DataFrame:
    """4-atom fcc Al cells, strained up to 5 % and rattled up to 0.3 A, labelled with EMT."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_cells):
        atoms = bulk("Al", "fcc", a=4.05, cubic=True)
        atoms.set_cell(atoms.cell @ (np.eye(3) + rng.uniform(-0.05, 0.05, (3, 3))), scale_atoms=True)
        atoms.rattle(0.3 * rng.random(), seed=i)
        atoms.calc = EMT()
        energy = atoms.get_potential_energy()
        rows.append(
            {
                "ase_atoms": atoms.copy(),
                "energy": energy,
                "energy_corrected": energy,
                "forces": atoms.get_forces(),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def potential(tmp_path_factory) -> tuple[str, str]:
    """(potential.yaml, potential.asi) of aluminium: LinearACEFit on EMT cells plus the pace_activeset CLI; the
    MD engines' tests (test_explore.py, test_lammps.py) and SELECT's (test_select.py, test_embedding.py)
    share it."""
    workdir = tmp_path_factory.mktemp("potential")
    data = emt_training_set()
    fit = LinearACEFit(train_dataset=LinearACEDataset(create_multispecies_basis_config(BASIS), data))
    fit.fit()
    fit.get_bbasis().to_BBasisConfiguration().save(str(workdir / "potential.yaml"))
    data.to_pickle(workdir / "data.pkl.gzip", compression="gzip", protocol=4)
    with open(workdir / "activeset.log", "w") as log:
        subprocess.run(
            [str(Path(sys.executable).parent / "pace_activeset"), "-d", "data.pkl.gzip", "potential.yaml"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=True,
        )
    return str(workdir / "potential.yaml"), str(workdir / "potential.asi")
