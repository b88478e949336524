"""Fixtures shared by several test modules."""

import importlib.util
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
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


def _program(name: str) -> bool:
    return bool(shutil.which(name)) or Path("/usr/sbin", name).exists()


#: What the suite needs beyond .venv's packages: how to tell it is here, and how to install it.
#: `scripts/test.sh` installs all of it (scripts/bootstrap.sh --tests). A test marked
#: `@pytest.mark.needs(NAME)` (or `qe`, which needs pw.x) is skipped where NAME is missing, and the session
#: ends with one line naming what to install; in CI (CI=true) it fails instead, so a green CI never hides
#: a real test that did not run.
NEEDS: dict[str, tuple[Callable[[], bool], str]] = {
    "pw.x": (lambda: _program("pw.x"), "apt-get install quantum-espresso"),
    "pseudopotentials": (lambda: Path("/usr/share/espresso/pseudo").is_dir(), "apt-get install quantum-espresso-data"),
    "chromium": (lambda: _program("chromium"), "apt-get install chromium"),
    "slurm": (lambda: all(map(_program, SLURM_PROGRAMS)),
              "apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"),
    "tensorpot": (lambda: importlib.util.find_spec("tensorpotential") is not None, "scripts/install-tensorpot.sh"),
}  # fmt: skip
_skipped: Counter[str] = Counter()


def need(name: str) -> None:
    """Skip (fail in CI) the running test unless NEEDS[name] is on this machine."""
    present, install = NEEDS[name]
    if present():
        return
    message = f"{name} is not installed here ({install}; scripts/test.sh installs it as root or with sudo)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    _skipped[name] += 1
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        need(*mark.args)
    if item.get_closest_marker("qe"):
        need("pw.x")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _skipped:
        missing = "; ".join(f"{name} ({count} test{'s' * (count > 1)}): {NEEDS[name][1]}" for name, count in _skipped.items())
        terminalreporter.write_line(
            f"Not run, missing on this machine: {missing}. scripts/test.sh installs them as root or with sudo.",
            yellow=True,
        )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[Path]:
    """A real one-node SLURM cluster, started and stopped by the repository's own script.

    Yields the cluster's slurm.conf (exported as SLURM_CONF for the session). Skipped on a machine without
    SLURM (`need`), except in CI, where a cluster that cannot be started fails the tests.
    """
    need("slurm")
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
