"""Run a command and take its whole process group down with it: `python group_guard.py ARGV...`.

`autopipe.apps.process.start` puts this guard between a task and its external program, in a session of
their own. The kernel signals the guard (SIGTERM) when the worker that started it dies, and a timeout or an
interrupt signals the group; either way the guard kills the group, so a pw.x started by a wrapper script
(grandchild of the task, which the kernel's parent-death signal does not reach) never outlives its task.
Standard library only: it starts in milliseconds with `python -I -S`.
"""

import os
import signal
import subprocess
import sys


def _end_group(signum: int, frame: object) -> None:
    """Everything in the group (the program, its children, this guard) ends now."""
    os.killpg(0, signal.SIGKILL)


def main() -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _end_group)
    code = subprocess.call(sys.argv[1:])
    return 128 - code if code < 0 else code  # died by signal N: the shell's 128+N


if __name__ == "__main__":
    sys.exit(main())
