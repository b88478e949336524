"""Running Pacemaker's command-line programs: argument lists, a timeout, the output kept in the task dir.

Each program runs in its own session so that a timeout stops it and every process it started (pacemaker
may fork workers). A non-zero exit becomes a TrainingFailure whose kind says why, with the log tail.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ..process import start, stop_group
from .errors import TrainingFailure

OUT_OF_MEMORY = re.compile(
    r"MemoryError|ResourceExhaustedError|Unable to allocate|std::bad_alloc|out of memory", re.IGNORECASE
)
# Pacemaker prints "Loss: 1.2e-03" per iteration and "loss=0.12" per evaluation; scipy carries on after a NaN.
NAN_LOSS = re.compile(r"loss\s*[:=]\s*[-+]?nan", re.IGNORECASE)
KILLED_CODES = {-signal.SIGKILL, 128 + signal.SIGKILL}
TAIL_LINES = 25
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL of a stopped tool's process group


def executable(name: str) -> str:
    """A Pacemaker CLI: the one installed beside the running interpreter (the venv's bin), else PATH's."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise TrainingFailure(
            f"The program {name!r} was found neither next to {sys.executable} nor on PATH. It ships with "
            "python-ace: run `pip install --pre python-ace` in the environment that runs the training tasks.",
            "missing_executable",
        )
    return found


def log_tail(log: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log, for error messages."""
    if not log.is_file():
        return "(no log written)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_tool(args: list[str], cwd: Path, log: Path, timeout: float) -> None:
    """Run `args` in `cwd` with stdout and stderr appended to `log`; raise TrainingFailure unless it exits 0."""
    program = Path(args[0]).name
    if timeout <= 0:
        raise TrainingFailure(f"No time is left of training.timeout to start {program}.", "timeout")
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(args)}\n".encode())
        out.flush()
        process = start(args, cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(process, STOP_GRACE)
            raise TrainingFailure(
                f"{program} was still running after {timeout:.0f} s (the time left of training.timeout) and was "
                f"stopped. Raise training.timeout, or use fewer iterations or functions. Last lines of {log}:\n"
                + log_tail(log),
                "timeout",
            ) from None
        except BaseException:
            stop_group(process, STOP_GRACE)  # an interrupted task must not leave a fit running
            raise
    if code != 0:
        tail = log_tail(log)
        if code in KILLED_CODES or OUT_OF_MEMORY.search(tail):
            raise TrainingFailure(
                f"{program} ran out of memory (exit code {code}). Use fewer functions_per_element or a smaller "
                f"batch_size, or give the train executor more memory. Last lines of {log}:\n{tail}",
                "out_of_memory",
            )
        raise TrainingFailure(
            f"{program} failed with exit code {code}. Last lines of {log}:\n{tail}", "subprocess_failed"
        )


def check_finite_loss(log: Path) -> None:
    """Refuse a fit whose logged loss became NaN (the optimizer may still exit 0 and save garbage)."""
    if log.is_file() and NAN_LOSS.search(log.read_text(errors="replace")):
        raise TrainingFailure(
            f"The loss became NaN during the fit (see {log}). Common causes: atoms closer than the inner core, "
            "huge forces in a label, or too large a learning step; check the newest labels.",
            "nan_loss",
        )

