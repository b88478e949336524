"""Batch jobs a driver submitted, written down so the next driver of the same project can cancel them.

A driver that is SIGKILLed (or whose allocation ends) cannot cancel its blocks: a running block's workers
would idle until walltime and a queued one would start later, for nobody. Each batch provider therefore
appends the id of every job it submits to a ledger in the run's Parsl directory, and `cancel_leftover_jobs`,
called before a driver starts its own executors, cancels everything an earlier driver recorded there.
"""

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from parsl.providers import PBSProProvider, SlurmProvider

log = logging.getLogger("autopipe")

LEDGER = "batch-jobs.txt"

#: How each scheduler cancels jobs (many ids in one call).
CANCEL_COMMAND = {"slurm": "scancel", "pbspro": "qdel"}


class _Recorded:
    """Mixin for a Parsl batch provider: submitted job ids go to the ledger; status polled every
    `poll_period` seconds (Parsl's batch providers hard-code 60 s, too slow to replace a lost block in a test)."""

    scheduler: str

    def __init__(self, *args: Any, ledger: Path, poll_period: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ledger = ledger
        self.poll_period = poll_period

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl") -> Any:
        job_id = super().submit(command, tasks_per_node, job_name)  # type: ignore[misc]
        if job_id:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            with open(self.ledger, "a") as handle:
                handle.write(f"{self.scheduler} {job_id}\n")
                handle.flush()
                os.fsync(handle.fileno())
        return job_id

    @property
    def status_polling_interval(self) -> int:
        return self.poll_period


class RecordedSlurmProvider(_Recorded, SlurmProvider):
    scheduler = "slurm"


class RecordedPBSProProvider(_Recorded, PBSProProvider):
    scheduler = "pbspro"


def cancel_leftover_jobs(run_dir: Path) -> list[str]:
    """Cancel every job recorded in `run_dir`'s ledger by an earlier driver, then empty the ledger.

    Jobs that already ended are refused by the scheduler, which is harmless. Returns the ids asked to cancel.
    """
    ledger = Path(run_dir) / LEDGER
    if not ledger.is_file():
        return []
    by_scheduler: dict[str, list[str]] = {}
    for line in ledger.read_text().splitlines():
        scheduler, _, job_id = line.partition(" ")
        if scheduler in CANCEL_COMMAND and job_id:
            by_scheduler.setdefault(scheduler, []).append(job_id)
    kept = []  # jobs of a scheduler that could not be reached stay recorded for the next driver
    for scheduler, job_ids in by_scheduler.items():
        try:
            subprocess.run([CANCEL_COMMAND[scheduler], *job_ids], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not cancel the %s jobs %s left by an earlier driver: %s", scheduler, job_ids, exc)
            kept += [f"{scheduler} {job_id}\n" for job_id in job_ids]
            continue
        log.info("cancelled the %s jobs left by an earlier driver: %s", scheduler, " ".join(job_ids))
    ledger.write_text("".join(kept))
    return [job_id for job_ids in by_scheduler.values() for job_id in job_ids]
