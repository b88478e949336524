"""Read-only access to a project's event log and structure database, safe while a run writes.

`mlip-auto status` and `mlip-auto events ...` must never change a project, never take its run lock and
never fail because a run is appending at the same moment. Both files are opened through SQLite URIs with
``mode=ro``; each read is one statement or one read transaction, so it sees a committed snapshot (WAL for
the log; the structure database's rollback journal makes a reader wait, up to `BUSY_TIMEOUT`, for a
commit in progress). Events come back as `LogEntry` tuples, without re-validating their payloads
(`events verify` does that) or pydantic's per-object cost, which keeps a 100,000-event log readable in
well under a second.

Example::

    events = read_events(project)                 # every committed event, oldest first
    rows = read_structures(project)               # one StructureRow per structure in structures.db
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from autopipe.errors import UsageError
from autopipe.events import EVENTS_FILE, Event

STRUCTURES_FILE = "structures.db"
BUSY_TIMEOUT = 30.0  # seconds a reader waits for a writer's commit


# One committed event with the fields of `events.Event` (always the same ones, being made from them);
# `fold` and the report read it as they read an Event.
LogEntry = NamedTuple("LogEntry", [(name, field.annotation) for name, field in Event.model_fields.items()])


@contextmanager
def read_only(path: Path, what: str) -> Iterator[sqlite3.Connection]:
    """An SQLite connection that cannot write to `path`; a damaged file is a UsageError naming it."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as err:
        raise UsageError(f"cannot open {what} {path}: {err}") from None
    try:
        yield conn
    except sqlite3.DatabaseError as err:
        raise UsageError(
            f"{path} is not a readable {what} ({err}); the project may be damaged. "
            "`mlip-auto events verify` checks the event log."
        ) from None
    finally:
        conn.close()


def events_path(project: Path) -> Path:
    """The project's event log, or a UsageError saying why `project` is not a started project."""
    if not project.is_dir():
        raise UsageError(f"project directory {project} does not exist")
    path = project / EVENTS_FILE
    if not path.is_file():
        raise UsageError(
            f"{project} holds no event log ({EVENTS_FILE}): give the directory of a project that "
            "`mlip-auto run` has started"
        )
    return path


def read_events(
    project: Path, *, after: int = 0, until: int | None = None, kind: str | None = None
) -> list[LogEntry]:
    """Committed events with after < seq <= until (and of `kind`, if given), oldest first."""
    path = events_path(project)
    sql = "SELECT seq, time, kind, payload, prev_hash, hash FROM events WHERE seq > ?"
    args: list[Any] = [after]
    if until is not None:
        sql, args = sql + " AND seq <= ?", [*args, until]
    if kind is not None:
        sql, args = sql + " AND kind = ?", [*args, kind]
    with read_only(path, "event log") as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone():
            raise UsageError(f"{path} is not an mlip-autopipe event log (it has no events table)")
        rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
    try:
        return [LogEntry(seq, time, kind_, json.loads(text), prev, digest) for seq, time, kind_, text, prev, digest in rows]
    except json.JSONDecodeError:
        raise UsageError(
            f"{path} holds an event whose payload is not JSON; run `mlip-auto events verify {project}`"
        ) from None


@dataclass(frozen=True, slots=True)
class StructureRow:
    """What the report needs of one structure: where it came from, whether it is labelled, its atoms."""

    generation: int
    config_type: str
    labelled: bool
    elements: dict[str, int]  # symbol -> number of atoms


def read_structures(project: Path) -> list[StructureRow]:
    """Every structure in ``structures.db`` (none if the run has not written one yet), in insertion order.

    Reads ase.db's own tables (`systems`, `species`) in one read transaction, because building 10,000
    ase `AtomsRow` objects would take seconds.
    """
    from ase.data import chemical_symbols

    path = project / STRUCTURES_FILE
    if not path.is_file():
        return []
    with read_only(path, "structure database") as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='systems'").fetchone():
            return []  # created, nothing written yet
        conn.execute("BEGIN")
        systems = conn.execute("SELECT id, key_value_pairs FROM systems ORDER BY id").fetchall()
        species = conn.execute("SELECT id, Z, n FROM species").fetchall()
        conn.execute("COMMIT")
    atoms: dict[int, dict[str, int]] = {}
    for row_id, number, count in species:
        atoms.setdefault(row_id, {})[chemical_symbols[number]] = count
    rows = []
    for row_id, text in systems:
        pairs = json.loads(text)
        rows.append(
            StructureRow(
                int(pairs.get("generation", 0)),
                str(pairs.get("config_type", "")),
                bool(pairs.get("labelled")),
                atoms.get(row_id, {}),
            )
        )
    return rows
