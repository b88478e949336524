"""Fills the disk the moment a run commits a chosen event: a full disk at a point that is the same every run.

Python imports `sitecustomize` at start-up from any directory on PYTHONPATH; tests/test_environment_faults.py
puts this one there, with AUTOPIPE_FILL_AT="<event kind> <state or task kind>" (e.g. "state.entered DFT",
"task.submitted train") and AUTOPIPE_BALLAST=<file on the small file system>, only for the `mlip-auto run` it
fills the disk under. Right after the first such event is committed, the ballast file grows until the file
system is full; the run itself is the installed code.
"""

import errno
import os
from collections.abc import Iterable
from typing import Any

FILL_AT = os.environ.get("AUTOPIPE_FILL_AT")
BALLAST = os.environ.get("AUTOPIPE_BALLAST")


def fill(path: str) -> None:
    """Write zeros to `path` until the file system has no block left."""
    chunk = b"\0" * 4096
    with open(path, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise


def install(kind: str, what: str, ballast: str) -> None:
    """Make `EventStore.append_many` fill the disk once it has committed a `kind` event about `what`."""
    from autopipe.events import Event, EventStore

    append_many = EventStore.append_many

    def filling(self: EventStore, items: Iterable[tuple[str, Any]]) -> list[Event]:
        events = append_many(self, items)
        if not os.path.exists(ballast) and any(
            e.kind == kind and what in (e.payload.get("state"), e.payload.get("kind")) for e in events
        ):
            fill(ballast)
        return events

    EventStore.append_many = filling


if FILL_AT and BALLAST:
    install(*FILL_AT.split(), BALLAST)
