"""Fixtures shared by several test modules."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
