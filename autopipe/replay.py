"""The run state at any point of the log: `events replay --until SEQ` and the state part of `status`.

Replaying is folding: the state after event SEQ is `fold` of events 1..SEQ, read read-only; on a damaged
log, of the events before the first bad seq, which the hash chain still vouches for. Events of a
kind this version does not know (written by a newer mlip-autopipe) are skipped rather than refused, so an
old tool can still show an old run's state.
"""

from __future__ import annotations

from typing import Any

from autopipe.errors import UsageError
from autopipe.events import PAYLOADS, RunState, fold
from autopipe.project_reader import EventLog, LogEntry


def fold_known(events: list[LogEntry]) -> RunState:
    """`fold` of the events whose kind this version knows (fold reads an entry as it reads an Event)."""
    return fold(event for event in events if event.kind in PAYLOADS)


def trusted_events(log: EventLog) -> list[LogEntry]:
    """The events a state may be folded from: those before the damage; UsageError if there are none."""
    if not log.events:
        raise UsageError(f"the event log of {log.project} is empty: the run has not recorded anything yet")
    if not log.trusted:
        raise UsageError(f"{log.damage_message()}: no event before the damage is left to show")
    return log.trusted


def replay(log: EventLog, until: int | None = None) -> RunState:
    """The run state after event `until` (the whole log if None), folded from the events before any
    damage; a seq past the end of the log is a UsageError."""
    events = [e for e in trusted_events(log) if until is None or e.seq <= until]
    if until is not None and log.events[-1].seq < until:
        raise UsageError(
            f"the event log of {log.project} ends at seq {log.events[-1].seq}; --until {until} is past it"
        )
    state = fold_known(events)
    state.last_seq = events[-1].seq
    return state


def state_summary(state: RunState) -> dict[str, Any]:
    """What a person asks of a run state: where the loop is, how much data and which models it has, what
    is still in flight. Plain JSON; `events replay --json` prints it."""
    pending = [state.tasks[key] for key in state.pending_keys]
    return {
        "seq": state.last_seq,
        "state": state.state,
        "generation": state.generation,
        "state_reason": state.state_reason,
        "finished": state.finished,
        "outcome": state.outcome,
        "reason": state.reason,
        "resumes": state.n_resumes,
        "structures": sum(len(uuids) for by_type in state.structures.values() for uuids in by_type.values()),
        "labels_done": len(state.labels_done()),
        "labels_failed": len(state.labels_failed()),
        "models": {str(g): model["potential"] for g, model in sorted(state.models.items())},
        "pending_tasks": [
            {"key": task.key, "kind": task.kind, "generation": task.generation, "label": task.label}
            for task in pending
        ],
    }
