"""The PBS Pro site as Parsl really submits it, against a STAND-IN scheduler (no PBS can run here).

`qsub`, `qstat` and `qdel` on PATH are small shell scripts written by this test: `qsub` keeps a copy of the
submit script Parsl generated and answers with a job id, `qstat` says every job is queued, `qdel` logs. The
real parts are everything on our side: the site file, `build_parsl_config`, Parsl's HighThroughputExecutor
and PBSProProvider writing the script and calling `qsub`.
"""

import sys
from pathlib import Path

import parsl
import pytest

from autopipe.executors import build_parsl_config, cancel_leftover_jobs, load_site
from autopipe.executors.jobs import LEDGER

STAND_IN_QSUB = """#!/bin/bash
# stand-in for PBS qsub: keep the script, print a job id
n=$(( $(ls {record} | grep -c '\\.submit$') + 1 ))
echo "$@" > {record}/job-$n.args
cp "${{@: -1}}" {record}/job-$n.submit
echo "$n.standin"
"""
STAND_IN_QSTAT = """#!/bin/bash
# stand-in for PBS qstat -x -f -F json: every job is queued
python3 -c 'import json, sys; print(json.dumps({{"Jobs": {{j: {{"job_state": "Q"}} for j in sys.argv[1:]
  if not j.startswith("-") and j not in ("json",)}}}}))' "$@"
"""
STAND_IN_QDEL = """#!/bin/bash
# stand-in for PBS qdel: log what was cancelled
echo "$@" >> {record}/qdel.log
"""


@pytest.fixture
def stand_in_pbs(tmp_path, monkeypatch) -> Path:
    """A folder of stand-in PBS commands first on PATH; returns the folder where they record."""
    bin_dir, record = tmp_path / "stand-in-bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("qsub", STAND_IN_QSUB), ("qstat", STAND_IN_QSTAT), ("qdel", STAND_IN_QDEL)):
        (bin_dir / name).write_text(text.format(record=record))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return record


def submitted(record: Path) -> dict[str, tuple[str, str]]:
    """job id -> (qsub arguments, submit script) of every job the stand-in received."""
    return {
        f"{path.stem.removeprefix('job-')}.standin": (path.with_suffix(".args").read_text(), path.read_text())
        for path in record.glob("job-*.submit")
    }


def test_pbs_generic_submit_scripts_carry_the_site_resources_and_launchers(stand_in_pbs, tmp_path):
    site = load_site("pbs-generic")
    run_dir = tmp_path / "runinfo"
    dfk = parsl.load(build_parsl_config(site, run_dir))
    try:
        dfk.executors["dft"].scale_out_facade(1)
        dfk.executors["cpu"].scale_out_facade(1)
        jobs = submitted(stand_in_pbs)
    finally:
        dfk.cleanup()
        parsl.clear()

    assert len(jobs) == 2
    dft_args, dft = next(job for job in jobs.values() if ".dft." in job[1])
    cpu_args, cpu = next(job for job in jobs.values() if ".cpu." in job[1])
    assert dft_args.startswith("-q workq -A MYPROJECT ") and cpu_args.startswith("-q workq -A MYPROJECT ")
    pbs = [line for line in dft.splitlines() if line.startswith("#PBS")]
    assert "#PBS -l walltime=02:00:00" in pbs and "#PBS -l select=1:ncpus=32" in pbs
    assert "#PBS -l place=excl" in pbs
    assert "#PBS -l walltime=01:00:00" in cpu
    # worker_init: the site's modules, its env, then the driver's venv first on PATH
    assert dft.index("module load quantum-espresso") < dft.index("export OMP_NUM_THREADS=1") < dft.index(
        f'export PATH={Path(sys.executable).parent}:"$PATH"')
    # launchers: `simple` runs one worker pool in the batch script; `mpiexec` one per node of the block
    assert dft.split("export JOBNAME")[1].split("\n")[2].startswith("process_worker_pool.py  --max_workers_per_node=1")
    assert "\nmpiexec --bind-to none  -n $WORKERCOUNT --hostfile $HOSTFILE" in cpu
    assert "process_worker_pool.py  --max_workers_per_node=8" in cpu and "-c 4.0" in cpu

    # the driver's ledger: the next driver of this run directory cancels both jobs with qdel
    assert sorted((run_dir / LEDGER).read_text().split()[1::2]) == sorted(jobs)
    cancelled_at_cleanup = (stand_in_pbs / "qdel.log").read_text().splitlines()
    assert sorted(cancel_leftover_jobs(run_dir)) == sorted(jobs)
    (leftovers,) = (stand_in_pbs / "qdel.log").read_text().splitlines()[len(cancelled_at_cleanup):]
    assert sorted(leftovers.split()) == sorted(jobs)
    assert cancel_leftover_jobs(run_dir) == []
