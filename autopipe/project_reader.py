"""Read-only access to a project's event log and structure database, safe while a run writes.

`mlip-auto status` and `mlip-auto events ...` must never change a project, never take its run lock and
never fail because a run is appending at the same moment. Both files are opened through SQLite URIs with
``mode=ro``; each read is one statement or one read transaction, so it sees a committed snapshot (WAL for
the log; the structure database's rollback journal makes a reader wait, up to `BUSY_TIMEOUT`, for a
commit in progress). Events come back as `LogEntry` tuples, with the hash chain checked on the same
snapshot (`events.chain_damage`, the check `events verify` makes, less payload validation), so that every
read-only command can say that the log is damaged; without pydantic's per-object cost, a 100,000-event
log is read and checked in about 1.6 s of CPU (1.3 s unchecked) on a busy 2-core machine.

Example::

    log = read_log(project)                       # every committed event, oldest first
    log.first_bad_seq                             # None, or where the hash chain breaks
    rows = read_structures(project)               # one StructureRow per structure in structures.db
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from autopipe.errors import UsageError
from autopipe.events import EVENTS_FILE, Event, chain_damage, parse_payload

STRUCTURES_FILE = "structures.db"
BUSY_TIMEOUT = 30.0  # seconds a reader waits for a writer's commit
ROWS_SQL = "SELECT seq, time, kind, payload, prev_hash, hash FROM events ORDER BY seq"
HEAD_SQL = "SELECT last_seq, last_hash FROM head WHERE id = 1"


# One committed event with the fields of `events.Event` (always the same ones, being made from them);
# `fold` and the report read it as they read an Event.
LogEntry = NamedTuple("LogEntry", [(name, field.annotation) for name, field in Event.model_fields.items()])


@contextmanager
def read_only(path: Path, what: str) -> Iterator[sqlite3.Connection]:
    """An SQLite connection that cannot write to `path`; a damaged file is a UsageError naming it.

    On a read-only file system a WAL database opens only where its -wal file exists (SQLite must otherwise
    create the -shm file); without one, nothing can be writing it, so it is opened as immutable.
    """
    frozen = not os.access(path.parent, os.W_OK) and not path.with_name(f"{path.name}-wal").exists()
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if frozen else "")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
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


@dataclass(frozen=True, slots=True)
class EventLog:
    """What a reader found in a log: its readable events, oldest first, and where its hash chain breaks.

    `events` holds every row whose payload is a JSON object, damaged ones included (`events list` shows
    them);
    `trusted` only those before the first bad seq, which the chain vouches for (what `status` and
    `replay` fold, so that a forged or half-written event never reaches the state they show).
    """

    project: Path
    events: list[LogEntry]
    first_bad_seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.first_bad_seq is None

    @property
    def trusted(self) -> list[LogEntry]:
        bad = self.first_bad_seq
        return self.events if bad is None else [e for e in self.events if e.seq < bad]

    def select(self, *, after: int = 0, until: int | None = None, kind: str | None = None) -> list[LogEntry]:
        """The events with after < seq <= until (and of `kind`, if given), oldest first."""
        return [
            e for e in self.events
            if e.seq > after and (until is None or e.seq <= until) and kind in (None, e.kind)
        ]

    def integrity(self) -> dict[str, Any]:
        """The fields every `--json` output of a read-only command carries."""
        return {"log_intact": self.intact, "first_bad_seq": self.first_bad_seq}

    def damage_message(self) -> str:
        """The warning a read-only command prints first ('' when the log is intact)."""
        return "" if self.first_bad_seq is None else damage_message(self.project, self.first_bad_seq)


def damage_message(project: Path | str, first_bad_seq: int) -> str:
    """The one warning every read-only command and the report give for a damaged log."""
    return f"event log damaged at seq {first_bad_seq} (see `mlip-auto events verify {project}`)"


def read_log(project: Path) -> EventLog:
    """Every committed event of `project` and the first damage of its hash chain (`chain_damage`).

    Rows and head are read in one read transaction: a run appends both in one, so a snapshot taken
    while it writes is always consistent and never reported as damaged.
    """
    path = events_path(project)
    with read_only(path, "event log") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "events" not in tables:
            raise UsageError(f"{path} is not an mlip-autopipe event log (it has no events table)")
        conn.execute("BEGIN")
        rows = conn.execute(ROWS_SQL).fetchall()
        head = conn.execute(HEAD_SQL).fetchone() if "head" in tables else None
        conn.execute("COMMIT")
    damage = chain_damage(rows, tuple(head) if head else None, payloads=False)
    parsed = ((seq, time, kind, parse_payload(text), prev, digest) for seq, time, kind, text, prev, digest in rows)
    events = [LogEntry(*row) for row in parsed if isinstance(row[3], dict)]  # a hand-made row may be neither
    return EventLog(project, events, damage[0] if damage else None)


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
