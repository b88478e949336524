"""The installed `mlip-auto` command, run as a user runs it: in a process of its own, output captured."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MLIP_AUTO = str(Path(sys.executable).parent / "mlip-auto")


def mlip_auto(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MLIP_AUTO, *args], capture_output=True, text=True, timeout=timeout, check=False)


def mlip_auto_measured(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float, int]:
    """`mlip_auto` plus its wall seconds and its own peak resident memory in bytes.

    The peak comes from `wait4` on this one process (and what it waited for), not from
    `RUSAGE_CHILDREN`, which keeps the largest child the test session ever reaped.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = subprocess.Popen([MLIP_AUTO, *args], stdout=out, stderr=err)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise subprocess.TimeoutExpired(process.args, timeout)
            time.sleep(0.02)
        seconds = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, out.read().decode(), err.read().decode())
    return result, seconds, usage.ru_maxrss * 1024
