"""Checks that keep a project's files whole: nothing resumes on a damaged checkpoint, nothing overwrites it.

A project is its event log (the checkpoint) plus the structure database the log points into; one without
the other cannot be resumed, and a log that fails `verify` must not be extended. (Where commands may write
files the user names is `autopipe.output_paths`.) Every refusal is a `UsageError` (exit 2) that says what
is wrong and what to do; none writes anything.
"""

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autopipe.errors import UsageError
from autopipe.events import EVENTS_FILE, EventStore

STRUCTURES_FILE = "structures.db"
NEW_PROJECT_HINT = "or start a new project with --workdir (`mlip-auto export` carries the labels over)"


def is_project(directory: Path) -> bool:
    """Whether `directory` holds a project's log or structure database."""
    return (directory / EVENTS_FILE).exists() or (directory / STRUCTURES_FILE).exists()


def check_project_dir(root: Path) -> None:
    """UsageError unless `root` can be a project directory (missing, or a directory)."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"the project directory {root} is a file, not a directory: choose another --workdir.")


def check_pair(root: Path, n_events: int) -> None:
    """UsageError when the log and the structure database are not both there (given the log's length).

    A log of zero events belongs to a run that stopped before it started; anything else needs both files.
    """
    structures, events = root / STRUCTURES_FILE, root / EVENTS_FILE
    if n_events and not structures.is_file():
        raise UsageError(
            f"{structures} is missing, but the event log {events} records {n_events} events whose "
            "structures and labels were stored there. The project cannot be resumed or reported without "
            f"it: restore {STRUCTURES_FILE} from a backup, or start a new project with --workdir."
        )
    if not events.is_file() and structures.is_file():
        raise UsageError(
            f"{events} is missing, but {structures} is there: the event log is the run's checkpoint, and "
            f"without it every label would be computed again. Restore {EVENTS_FILE} from a backup, "
            f"{NEW_PROJECT_HINT}."
        )


def check_intact(store: EventStore) -> int:
    """The number of events of a log that passes `verify`; UsageError naming the first bad seq otherwise."""
    try:
        report = store.verify()
    except sqlite3.DatabaseError as err:
        raise UsageError(
            f"the event log {store.path} cannot be read ({err}): the file is damaged. Restore it from a "
            f"backup, {NEW_PROJECT_HINT}."
        ) from None
    if not report.ok:
        raise UsageError(
            f"the event log {store.path} fails verification at seq {report.first_bad_seq}: {report.reason}. "
            "A run does not append to a damaged log. Restore the log from a backup, "
            f"{NEW_PROJECT_HINT} (`mlip-auto events verify` shows the damage)."
        )
    return report.n_events


def check_potentials(root: Path, models: Iterable[dict[str, Any]], why: str) -> None:
    """UsageError when a potential or active set of `models` (`model.trained` payloads) is gone. It is not
    fitted again: a refit need not reproduce the potential the later stages used. `why` says what needs
    them, e.g. "the run cannot go on without them"."""
    missing = [
        name for model in models for name in (model["potential"], model["active_set"])
        if not (root / name).is_file()
    ]
    if missing:
        raise UsageError(
            f"the project {root} lacks {', '.join(missing)}, which its event log records as trained: {why}. "
            "Restore them (from a backup, or the train task's fit/ directory under generations/), "
            f"{NEW_PROJECT_HINT}."
        )
