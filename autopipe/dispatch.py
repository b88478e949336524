"""The one place where apps become Parsl apps.

Every task runs through `run_task` on a worker: it calls the app by its dotted name, then writes the app's
result atomically to ``result.json`` in the task directory. That file is the task's data; the workflow's
`task.completed` event points to it. A run killed after the file was written but before the event was
appended adopts the file on resume instead of computing the task again.
"""

import importlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
from parsl.app.app import python_app

from autopipe.apps.process import interrupted
from autopipe.errors import AutopipeError
from autopipe.executors.lifeline import process_identity, watch
from autopipe.executors.parsl_config import FAILED_TRIES

RESULT_FILE = "result.json"
log = logging.getLogger("autopipe")

#: The executor kind (site `kinds`) each task kind runs on; kinds not listed run on their own.
EXECUTOR_KIND = {"init": "light", "select": "light", "explore": "md", "reference": "dft", "assess_md": "md",
                 "assess": "light"}

#: Dotted names of the app functions each task kind calls.
APP_FUNCTIONS = {
    "init": "autopipe.apps.structures.generate:initial_structures",
    "dft": "autopipe.apps.dft:label",
    "train": "autopipe.apps.train:fit",
    "explore": "autopipe.apps.explore:run_walker",
    "select": "autopipe.apps.select:select_candidates",
    "reference": "autopipe.apps.dft:label",
    "assess_md": "autopipe.apps.assess:md_check",
    "assess": "autopipe.apps.assess:assess_potential",
}


def read_result(task_dir: Path) -> dict[str, Any] | None:
    """The result a finished task left in its directory, or None if it never finished.

    `run_task` writes the file atomically, so one that does not parse was damaged afterwards: it counts
    as no result (the task runs again), never as a crash of the resumed run.
    """
    path = Path(task_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        result = None
    if not isinstance(result, dict) or not ({"value", "error"} & result.keys()) or "wall_time" not in result:
        log.warning("ignoring the damaged result file %s: the task runs again", path)
        return None
    return result


def ran_on() -> dict[str, Any]:
    """Where a task runs: the host and, inside a batch job, the scheduler's job id (for the event log)."""
    job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")
    return {"host": socket.gethostname(), **({"job_id": job_id} if job_id else {})}


def execution(future: Future, outcome: dict[str, Any]) -> dict[str, Any]:
    """Where the task's last try ran, how many tries Parsl made and why the earlier ones were lost
    (a worker's node or batch job gone: `ManagerLost`). Parsl retries those itself (site `retries`)."""
    record = getattr(future, "task_record", None) or {}
    return {**outcome.get("ran_on", {}), "tries": record.get("try_id", 0) + 1, "lost": record.get(FAILED_TRIES, [])}


def driver_identity() -> dict[str, Any]:
    """Who submits: this process, on this host."""
    return {"host": socket.gethostname(), **process_identity()}


def _abandon_when_driver_dies(driver: dict[str, Any], stop: threading.Event) -> None:
    """End this task, with its subprocesses (pw.x, pacemaker), if the run that submitted it was killed.

    Parsl's workers can outlive a SIGKILLed driver; without this their in-flight tasks would run on and race
    the resumed run for the same task directories. Only a driver on the same host can be watched this way.
    """
    if driver["host"] != socket.gethostname() or driver["pid"] == os.getpid():
        return

    def abandon() -> None:
        for child in psutil.Process().children(recursive=True):
            child.kill()
        os._exit(70)

    watch(driver, abandon, period=0.2, stop=stop)


def run_task(function: str, kwargs: dict[str, Any], task_dir: str, driver: dict[str, Any]) -> dict[str, Any]:
    """Run one app in a clean task directory and persist its result; executed on a Parsl worker.

    Partial output of an interrupted earlier attempt is removed first, so nothing half-written is reused.
    Errors the app raises on purpose (`AutopipeError`) come back as ``{"error": {...}}`` rather than as an
    exception, so their `kind` survives the trip between processes.
    """
    if interrupted():  # queued behind the tasks a Ctrl-C of a threads run stopped: start nothing more
        return {"error": {"kind": "interrupted", "message": "not started: the run is interrupted"}, "wall_time": 0.0}
    stop = threading.Event()
    _abandon_when_driver_dies(driver, stop)
    try:
        return _run_in(Path(task_dir), function, kwargs)
    finally:
        stop.set()


def _run_in(directory: Path, function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    module_name, attribute = function.split(":")
    app = getattr(importlib.import_module(module_name), attribute)
    start = time.perf_counter()
    try:
        result = {"value": app(**kwargs)}
    except AutopipeError as exc:
        result = {"error": {"kind": getattr(exc, "kind", type(exc).__name__), "message": str(exc)}}
    result["wall_time"] = time.perf_counter() - start
    if interrupted():
        # Its programs were stopped by Ctrl-C, so the outcome says nothing about the task: no result.json
        # (the task runs again on resume), and no exception, which Parsl would answer with a retry on an
        # executor that is shutting down.
        return result
    result["ran_on"] = ran_on()
    tmp = directory / (RESULT_FILE + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(result, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, directory / RESULT_FILE)
    return result


class Dispatcher:
    """Submits tasks of a kind to the executor the site maps that kind to."""

    def __init__(self, executor_for: dict[str, str]):
        self._apps = {kind: python_app(run_task, executors=[label]) for kind, label in executor_for.items()}
        self._driver = driver_identity()

    def submit(self, kind: str, kwargs: dict[str, Any], task_dir: Path) -> Future:
        """Start one task; `kind` picks both the app function and the executor."""
        return self._apps[EXECUTOR_KIND.get(kind, kind)](APP_FUNCTIONS[kind], kwargs, str(task_dir), self._driver)
