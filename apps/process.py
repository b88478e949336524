"""Child processes of apps (pw.x, pacemaker, pace_activeset), started so that none can outlive its task.

Each runs in its own session, so a timeout stops its whole process group (MPI ranks included), and is tied
to the worker that started it: when that worker dies (Parsl shutdown, Ctrl-C, a killed run) the kernel
kills the child too, instead of leaving an orphaned pw.x computing.
"""

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: the child may only make the prctl call between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start(args: list[str], cwd: Path, **popen: Any) -> subprocess.Popen:
    """Popen `args` (an argument list, never a shell line) in its own session, bound to this process."""
    # preexec_fn is safe here despite threads: it makes one prctl call through an already loaded libc.
    return subprocess.Popen(args, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent, **popen)  # noqa: PLW1509


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
