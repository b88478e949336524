"""Live progress of `mlip-auto run`: bars for each batch of tasks, one line per state change.

The workflow knows nothing of it: `WorkflowManager.append` logs every event it appends at DEBUG level
with the event attached (``extra={"event": event}``), and `ProgressHandler`, a logging handler, turns
those events into a display. On a terminal that is rich progress bars (DFT labels done / running /
failed, training, MD walkers) under the state lines; anywhere else (a CI log, a batch job's output) it
is the state lines only.

Example::

    with show_progress(console, verbose=False):
        run_project(input_path, "local")
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from autopipe.logs import LOGGER

#: What a batch of each task kind is called on its bar.
BATCH_NAMES = {
    "init": "initial structures", "dft": "DFT labels", "train": "training", "explore": "MD walkers",
    "select": "selection", "reference": "assessment DFT", "assess_md": "assessment MD", "assess": "assessment",
}  # fmt: skip


@dataclass
class Batch:
    """The tasks of one kind and generation that this run has seen submitted and finished."""

    bar: TaskID | None
    submitted: int = 0
    done: int = 0
    failed: int = 0

    @property
    def running(self) -> int:
        return max(0, self.submitted - self.done - self.failed)


class ProgressHandler(logging.Handler):
    """Receives the workflow's appended events (log records carrying `event`) and shows the progress."""

    def __init__(self, console: Console, bars: bool, state_lines: bool) -> None:
        super().__init__(logging.DEBUG)
        self.console = console
        self.state_lines = state_lines
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn())  # fmt: skip
        self.progress = Progress(*columns, console=console, transient=True) if bars else None
        self.batches: dict[tuple[str, int], Batch] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event is None:
            return
        p = event.payload
        if event.kind == "state.entered":
            self._state_entered(p["state"], p["generation"], p["reason"])
        elif event.kind in ("task.submitted", "task.retried", "task.completed", "task.failed"):
            self._count(event.kind, p["kind"], p["generation"])

    def _state_entered(self, state: str, generation: int, reason: str) -> None:
        """One line for the new state; the bars of finished batches give way to it."""
        if self.state_lines:
            text = f"-> {state} (generation {generation})" + (f": {reason}" if reason else "")
            self.console.print(text, soft_wrap=True, highlight=False)
        if self.progress:
            for batch in self.batches.values():
                if batch.bar is not None and not batch.running:
                    self.progress.remove_task(batch.bar)
                    batch.bar = None

    def _count(self, kind: str, task_kind: str, generation: int) -> None:
        batch = self.batches.get((task_kind, generation))
        if batch is None:
            name = f"{BATCH_NAMES.get(task_kind, task_kind)}, generation {generation}"
            bar = self.progress.add_task(name, total=0, counts="") if self.progress else None
            batch = self.batches[(task_kind, generation)] = Batch(bar)
        if kind in ("task.submitted", "task.retried"):
            batch.submitted += 1
        elif kind == "task.completed":
            batch.done += 1
        else:
            batch.failed += 1
        batch.submitted = max(batch.submitted, batch.done + batch.failed)  # a result adopted on resume
        if self.progress and batch.bar is not None:
            self.progress.update(batch.bar, total=batch.submitted, completed=batch.done + batch.failed,
                                 counts=f"{batch.done} done, {batch.running} running, {batch.failed} failed")


@contextmanager
def show_progress(console: Console, verbose: bool) -> Iterator[ProgressHandler]:
    """Show the run's progress on `console` for the duration of the block.

    Bars only where `console` is a terminal. Unless `verbose` (when the log itself shows every step), the
    console log shows warnings only while the block runs, and each state change is one line.
    """
    handler = ProgressHandler(console, bars=console.is_terminal, state_lines=not verbose)
    quieted = [] if verbose else [h for h in LOGGER.handlers if isinstance(h, RichHandler)]
    levels = [h.level for h in quieted]
    for h in quieted:
        h.setLevel(logging.WARNING)
    logger_level = LOGGER.level
    LOGGER.setLevel(logging.DEBUG)  # the events come as DEBUG records
    LOGGER.addHandler(handler)
    if handler.progress:
        handler.progress.start()
    try:
        yield handler
    finally:
        if handler.progress:
            handler.progress.stop()
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(logger_level)
        for h, level in zip(quieted, levels, strict=True):
            h.setLevel(level)
