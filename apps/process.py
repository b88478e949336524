"""Child processes of apps (pw.x, pacemaker, pace_activeset), started so that none can outlive its task.

Each runs under `group_guard` in a session of its own, so a timeout or an interrupt ends its whole process
group (launcher, wrapper scripts, MPI ranks included), and the guard is tied to the worker that started it:
when that worker dies (Parsl shutdown, Ctrl-C, a killed run) the kernel signals the guard, which kills the
group, instead of leaving an orphaned pw.x computing. In a driver that runs tasks in threads, `stop_all`
ends every running group at once on Ctrl-C and refuses new ones.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autopipe.errors import RunError

_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: the child may only make the prctl call between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_GUARD = str(Path(__file__).with_name("group_guard.py"))
_running: set[subprocess.Popen] = set()
_registry = threading.Lock()
_stopping = threading.Event()


class Interrupted(RunError):
    """The run is being interrupted: no new program may start, and no result of a stopped one counts."""


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start(args: list[str], cwd: Path, **popen: Any) -> subprocess.Popen:
    """Popen `args` (an argument list, never a shell line) under the group guard, bound to this process."""
    with _registry:
        if _stopping.is_set():
            raise Interrupted(f"not starting {args[0]}: the run is being interrupted")
        _running.difference_update({p for p in _running if p.poll() is not None})
        # preexec_fn is safe here despite threads: it makes one prctl call through an already loaded libc.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", _GUARD, *args],
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
            **popen,
        )
        _running.add(process)
    return process


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL it if it is still there after `grace` seconds, and
    return once no process of the group is left (the guard dies first; its group may take a moment)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def stop_all(grace: float = 5.0) -> None:
    """End every running child group of this process and refuse new ones (Ctrl-C of a threads run)."""
    _stopping.set()
    with _registry:
        running = list(_running)
    for process in running:
        stop_group(process, grace)


def interrupted() -> bool:
    """Whether `stop_all` was called: a task's result is then not to be trusted or kept."""
    return _stopping.is_set()
