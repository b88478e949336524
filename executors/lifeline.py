"""Tie the processes Parsl leaves behind to the life of the run (the driver) that started them.

Parsl's HTEX interchange does not notice that its driver was SIGKILLed and keeps the worker pools connected
(and their in-flight tasks running) indefinitely. Here the interchange runs in its own session, so a Ctrl-C
in the terminal reaches only the driver, which then shuts it down in order, and it exits by itself when the
driver is gone; the workers then lose their heartbeat and exit. Tasks watch the driver too (see
`autopipe.dispatch`), so a resumed run never races a killed run's work.
"""

import os
import runpy
import sys
import threading
from typing import Any

import psutil


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """pid and start time (the start time guards against a reused pid)."""
    process = psutil.Process(pid)
    return {"pid": process.pid, "started": process.create_time()}


def is_alive(identity: dict[str, Any]) -> bool:
    try:
        return abs(psutil.Process(identity["pid"]).create_time() - identity["started"]) < 0.01
    except psutil.NoSuchProcess:
        return False


def watch(identity: dict[str, Any], on_death: Any, period: float, stop: threading.Event | None = None) -> None:
    """Call `on_death()` from a daemon thread once the process `identity` is gone (unless `stop` is set)."""
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            if not is_alive(identity):
                on_death()
                return

    threading.Thread(target=loop, name="autopipe-lifeline", daemon=True).start()


def interchange_command(driver: dict[str, Any]) -> list[str]:
    """The HTEX `interchange_launch_cmd` that starts Parsl's interchange through `main` below."""
    # -c, not -m: running the module as __main__ after its package imported it makes Python warn on stderr
    return [sys.executable, "-c", "from autopipe.executors.lifeline import main; main()",
            str(driver["pid"]), repr(driver["started"])]


def main() -> None:
    """Run Parsl's interchange in a new session, exiting as soon as the driver is gone."""
    driver = {"pid": int(sys.argv[1]), "started": float(sys.argv[2])}
    os.setsid()
    watch(driver, lambda: os._exit(0), period=1.0)
    sys.argv = sys.argv[:1]
    runpy.run_module("parsl.executors.high_throughput.interchange", run_name="__main__", alter_sys=True)
