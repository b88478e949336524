"""The installed `mlip-auto` command, run as a user runs it: in a process of its own, output captured."""

import subprocess
import sys
from pathlib import Path

MLIP_AUTO = str(Path(sys.executable).parent / "mlip-auto")


def mlip_auto(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MLIP_AUTO, *args], capture_output=True, text=True, timeout=timeout, check=False)
