"""The installed `mlip-auto` command, run as a user runs it: in a process of its own, output captured."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLIP_AUTO = str(Path(sys.executable).parent / "mlip-auto")

#: Runs argv[2:] and writes its peak resident memory (KiB) to argv[1]. A process started straight from
#: the test session would be charged the session's own memory: Linux folds the parent's high-water mark
#: into the child's at exec. This small interpreter in between is what the command is forked from.
_PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def start_as_from_a_terminal(*args: str) -> subprocess.Popen:
    """The installed `mlip-auto` started with Ctrl-C's default disposition, as from a terminal, even when
    pytest itself was started in the background with SIGINT ignored: an ignored signal stays ignored across
    exec (and Python keeps it so), a handled one is reset to the default. Output captured as text."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([MLIP_AUTO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def mlip_auto(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MLIP_AUTO, *args], capture_output=True, text=True, timeout=timeout, check=False)


def mlip_auto_measured(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float, int]:
    """`mlip_auto` plus its wall seconds and its own peak resident memory in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-c", _PEAK, str(peak), MLIP_AUTO, *args], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        seconds = time.monotonic() - start
        return subprocess.CompletedProcess(process.args, process.returncode, out, err), seconds, int(peak.read_text()) * 1024
