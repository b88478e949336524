"""The run's append-only, hash-chained event log, the one-run-per-project lock, and `fold`.

The log is the only source of truth for a run: `fold(store.events())` rebuilds the run state, so a
killed run resumes from what was committed. Every event is validated against one payload model per
kind, chained to its predecessor by a SHA-256 hash, and committed durably (WAL, synchronous=FULL)
before `append` returns. A one-row `head` table, written in the same transaction as the events,
remembers the last seq and hash so that rows deleted from the end are detected by `verify`.

Example::

    with run_lock(project), EventStore(project / EVENTS_FILE) as store:
        store.append("state.entered", StateEntered(state="INIT", generation=0))
        state = fold(store.events())
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import sqlite_utils
from pydantic import BaseModel, ConfigDict, ValidationError

from autopipe.errors import EventLogError, UsageError
from autopipe.faults import environment_fault

EVENTS_FILE = "events.sqlite"
LOCK_FILE = "run.lock"
ZERO_HASH = "0" * 64

LoopState = Literal["INIT", "DFT", "TRAIN", "EXPLORE", "SELECT", "ASSESS", "DONE", "FAILED"]
TaskKind = Literal["init", "dft", "train", "explore", "select", "reference", "assess_md", "assess"]
TaskStatus = Literal["submitted", "completed", "failed"]


# --- payloads: one model per event kind -------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunStarted(_Payload):
    config_hash: str
    config: dict[str, Any]
    autopipe_version: str
    site: str


class RunResumed(_Payload):
    config_hash: str
    site: str
    pending_tasks: int


class StateEntered(_Payload):
    state: LoopState
    generation: int
    reason: str = ""


class _TaskRef(_Payload):
    key: str
    kind: TaskKind
    generation: int


class TaskSubmitted(_TaskRef):
    label: str = ""
    inputs: dict[str, Any] = {}


class TaskCompleted(_TaskRef):
    result: dict[str, Any]
    wall_time: float
    execution: dict[str, Any] = {}  # host, batch job id, Parsl's tries and why earlier tries were lost


class TaskFailed(_TaskRef):
    failure_kind: str
    message: str
    attempts: list[dict[str, Any]] = []
    execution: dict[str, Any] = {}


class TaskRetried(_TaskRef):
    """A task submitted before a crash and never finished, submitted again on resume; or a completed task
    whose result files a later step reads are missing or damaged, computed again."""

    reason: str


class StructuresAdded(_Payload):
    generation: int
    config_type: str
    uuids: list[str]


class DatasetExtended(_Payload):
    generation: int
    n_new: int
    n_total: int


class ModelTrained(_Payload):
    generation: int
    potential: str
    active_set: str
    metrics: dict[str, Any]
    n_train: int
    n_validation: int


class ExplorationFinished(_Payload):
    generation: int
    n_walkers: int
    n_candidates: int
    max_gamma: float | None
    halted: int
    round: int = 0  # 0: the generation's own exploration; r: aimed at the r-th failed assessment
    candidates: list[str] = []  # the walkers' candidate files, relative to the project
    continuations: list[str | None] = []  # per walker, in schedule order: its last trusted frame (or None)


class SelectionMade(_Payload):
    generation: int
    uuids: list[str]
    n_candidates: int
    round: int = 0


class AssessmentFinished(_Payload):
    """Every number compared with fresh DFT, its tolerance and the verdict (docs/assessment.md)."""

    generation: int
    round: int
    source: Literal["run", "cli"]
    usable: bool
    reason: str
    failing: list[str]  # the properties that did not pass
    rows: list[dict[str, Any]]
    reference_volume: float  # A^3/atom at which the reference cells were built (DFT's coarse V0)
    dft_volume: float  # DFT's V0 from the fine E(V)
    potential_volume: float  # the potential's V0 (reference_volume when it has none)
    n_references: int
    settings: dict[str, Any] = {}  # the assess settings used (tolerances, cells, MD check)


class RunRetried(_Payload):
    """A FAILED run started again once its cause was fixed: `state` of `generation` runs again and its
    failed `tasks` are submitted anew; everything that finished is kept."""

    state: LoopState
    generation: int
    reason: str
    tasks: list[str]


class RunFinished(_Payload):
    outcome: Literal["done", "failed"]
    reason: str
    generation: int
    usable: bool | None = None  # the final assessment's verdict; None when none was made


PAYLOADS: dict[str, type[BaseModel]] = {
    "run.started": RunStarted,
    "run.resumed": RunResumed,
    "state.entered": StateEntered,
    "task.submitted": TaskSubmitted,
    "task.completed": TaskCompleted,
    "task.failed": TaskFailed,
    "task.retried": TaskRetried,
    "structures.added": StructuresAdded,
    "dataset.extended": DatasetExtended,
    "model.trained": ModelTrained,
    "exploration.finished": ExplorationFinished,
    "selection.made": SelectionMade,
    "assessment.finished": AssessmentFinished,
    "run.retried": RunRetried,
    "run.finished": RunFinished,
}


# --- events and their hash chain ---------------------------------------------------------------------


class Event(BaseModel):
    """One committed entry of the log; `hash` covers every other field."""

    seq: int
    time: str
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyReport(BaseModel):
    """What `EventStore.verify` found; `first_bad_seq` is None when the log is intact."""

    ok: bool
    n_events: int
    first_bad_seq: int | None = None
    reason: str = ""


def canonical_json(obj: Any) -> str:
    """The one JSON spelling that is hashed and stored: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def event_hash(seq: int, time: str, kind: str, payload: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 hex digest of the canonical JSON of an event's fields other than its hash."""
    return stored_event_hash(seq, time, kind, canonical_json(payload), prev_hash)


def stored_event_hash(seq: int, time: str, kind: str, payload_text: str, prev_hash: str) -> str:
    """`event_hash` from the payload's canonical JSON text, as the log stores it: the canonical JSON of
    {seq, time, kind, payload, prev_hash} spelled out in its sorted key order, so that a reader checks
    the chain without parsing and re-serialising every payload (a third of a 100,000-event read). A string's
    canonical JSON is `json.dumps`'s default spelling, whose shared encoder is several times quicker."""
    body = (
        f'{{"kind":{json.dumps(kind)},"payload":{payload_text},"prev_hash":{json.dumps(prev_hash)},'
        f'"seq":{int(seq)},"time":{json.dumps(time)}}}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


def validate_payload(kind: str, payload: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The payload as it will be stored (defaults filled in, JSON types), or EventLogError."""
    model = PAYLOADS.get(kind)
    if model is None:
        raise EventLogError(f"unknown event kind {kind!r}; the known kinds are: {', '.join(PAYLOADS)}")
    if isinstance(payload, BaseModel):
        payload = payload.model_dump()
    try:
        text = canonical_json(model.model_validate(payload).model_dump())
    except ValidationError as err:
        raise EventLogError(f"invalid payload for event kind {kind!r}: {err}") from None
    except (TypeError, ValueError) as err:
        raise EventLogError(f"payload for event kind {kind!r} is not plain JSON: {err}") from None
    return json.loads(text)


# --- the store ---------------------------------------------------------------------------------------


class EventStore:
    """The append-only event log of one project, an SQLite file written through sqlite-utils.

    `EventStore(path)` opens the log for a run and creates it if needed; use `open_existing` to read a
    log that must already exist. One instance may be shared between threads; any number of other
    processes may read while one process appends.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UsageError(
                f"no event log at {self.path}: give the directory of a project that `mlip-auto run` has "
                f"started (it holds {EVENTS_FILE})"
            )
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        except sqlite3.OperationalError as err:
            raise environment_fault(err, self.path) or EventLogError(
                f"cannot open the event log {self.path}: {err}"
            ) from None
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        try:
            self.db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before append returns
            if create:
                self._create_schema()
            elif not {"events", "head"} <= set(self.db.table_names()):
                raise UsageError(f"{self.path} is not an mlip-autopipe event log (it has no events table)")
        except sqlite3.DatabaseError as err:
            self.close()
            raise environment_fault(err, self.path) or UsageError(
                f"{self.path} is not an mlip-autopipe event log: {err}"
            ) from None
        except UsageError:
            self.close()
            raise

    @classmethod
    def open_existing(cls, path: str | Path) -> EventStore:
        """Open a log for reading without creating anything; a wrong path is a UsageError."""
        return cls(path, create=False)

    def _create_schema(self) -> None:
        self.db.enable_wal()
        with self.db.atomic():
            self.db["events"].create(
                {"seq": int, "time": str, "kind": str, "payload": str, "prev_hash": str, "hash": str},
                pk="seq",
                not_null={"time", "kind", "payload", "prev_hash", "hash"},
                if_not_exists=True,
            )
            self.db["head"].create(
                {"id": int, "last_seq": int, "last_hash": str}, pk="id", if_not_exists=True
            )
            for action in ("UPDATE", "DELETE"):  # guards against accidents; `verify` catches the rest
                self.db.execute(
                    f"CREATE TRIGGER IF NOT EXISTS events_no_{action.lower()} BEFORE {action} ON events "
                    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writing

    def append(self, kind: str, payload: BaseModel | dict[str, Any]) -> Event:
        """Validate, chain and durably commit one event; it is on disk when this returns."""
        return self.append_many([(kind, payload)])[0]

    def append_many(self, items: Iterable[tuple[str, BaseModel | dict[str, Any]]]) -> list[Event]:
        """Append several events in one transaction: all of them are committed, or none."""
        validated = [(kind, validate_payload(kind, payload)) for kind, payload in items]
        with self._lock, self._write_transaction():
            last_seq, last_hash = self._checked_head()
            events = []
            for kind, payload in validated:
                last_seq += 1
                time = datetime.now(UTC).isoformat(timespec="microseconds")
                digest = event_hash(last_seq, time, kind, payload, last_hash)
                events.append(
                    Event(
                        seq=last_seq, time=time, kind=kind, payload=payload, prev_hash=last_hash, hash=digest
                    )
                )
                last_hash = digest
            self.db["events"].insert_all(
                {**event.model_dump(), "payload": canonical_json(event.payload)} for event in events
            )
            self.db["head"].upsert({"id": 1, "last_seq": last_seq, "last_hash": last_hash}, pk="id")
        return events

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock before the head is read, so seq numbers cannot race."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise
        except sqlite3.Error as err:
            raise environment_fault(err, self.path) or EventLogError(
                f"cannot write to the event log {self.path}: {err}"
            ) from None

    def _head(self) -> tuple[int, str] | None:
        row = self.db.execute("SELECT last_seq, last_hash FROM head WHERE id = 1").fetchone()
        return (row[0], row[1]) if row else None

    def _checked_head(self) -> tuple[int, str]:
        """The chain head, refusing to extend a log whose last row does not match it."""
        head = self._head() or (0, ZERO_HASH)
        last = self.db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if (tuple(last) if last else (0, ZERO_HASH)) != head:
            raise EventLogError(
                f"the event log {self.path} is damaged (its head records event {head[0]}, its last row is "
                f"{last[0] if last else 'none'}); run `mlip-auto events verify` and do not append to it"
            )
        return head

    # reading

    def events(self, after_seq: int = 0) -> list[Event]:
        """All events with seq > after_seq, in order."""
        with self._lock:
            rows = list(self.db["events"].rows_where("seq > ?", [after_seq], order_by="seq"))
        return [_event(row) for row in rows]

    def last(self) -> Event | None:
        """The most recent event, or None for an empty log."""
        with self._lock:
            rows = list(self.db["events"].rows_where(order_by="seq desc", limit=1))
        return _event(rows[0]) if rows else None

    def verify(self) -> VerifyReport:
        """Re-check every row: seq continuity, the hash chain, each hash, each payload, and the head."""
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, time, kind, payload, prev_hash, hash FROM events ORDER BY seq"
            ).fetchall()
            head = self._head()
        problem = chain_damage(rows, head)
        if problem:
            return VerifyReport(ok=False, n_events=len(rows), first_bad_seq=problem[0], reason=problem[1])
        return VerifyReport(ok=True, n_events=len(rows))


def _event(row: dict[str, Any]) -> Event:
    return Event(**{**row, "payload": json.loads(row["payload"])})


#: One row as the events table stores it: seq, time, kind, payload (JSON text), prev_hash, hash.
StoredRow = tuple[int, str, str, str, str, str]


def parse_payload(text: str) -> dict[str, Any] | None:
    """A stored payload as JSON, or None where the text is not JSON (a damaged row, for `chain_damage`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def chain_damage(
    rows: Iterable[StoredRow], head: tuple[int, str] | None, *, payloads: bool = True
) -> tuple[int, str] | None:
    """(first bad seq, reason) of a log's rows in seq order and its head record, or None if intact.

    The one hash-chain check: `verify` runs it on a writable store, the read-only commands on their own
    snapshot. `payloads=False` leaves out payload validation, so that events of a kind a newer version
    wrote still pass (the hashes vouch for them) and a large log stays quick to check.
    """
    expected_seq, prev = 1, ZERO_HASH
    for seq, time, kind, text, prev_hash, stored_hash in rows:
        problem = _row_problem(seq, expected_seq, time, kind, text, prev_hash, prev, stored_hash)
        if not problem and payloads:
            problem = _payload_problem(seq, kind, text)
        if problem:
            return problem
        expected_seq, prev = seq + 1, stored_hash
    return _head_problem(head, expected_seq - 1, prev)


def _row_problem(
    seq: int,
    expected_seq: int,
    time: str,
    kind: str,
    text: str,
    prev_hash: str,
    prev: str,
    stored_hash: str,
) -> tuple[int, str] | None:
    """(bad seq, reason) for the first thing wrong with one stored row's place in the chain, or None."""
    if seq != expected_seq:
        return expected_seq, f"event {expected_seq} is missing (the next row present is {seq})"
    if prev_hash != prev:
        return seq, f"broken chain: event {seq} does not point to the hash of event {seq - 1}"
    if stored_event_hash(seq, time, kind, text, prev_hash) == stored_hash:
        return None  # the payload text as it was written (the common case, no parsing needed)
    payload = parse_payload(text)
    if payload is None:
        return seq, f"event {seq}: the payload is not valid JSON"
    if event_hash(seq, time, kind, payload, prev_hash) != stored_hash:
        return seq, f"hash mismatch: event {seq} was edited after it was written"
    return None


def _payload_problem(seq: int, kind: str, text: str) -> tuple[int, str] | None:
    """(seq, reason) if the stored payload does not validate against its kind's model, or None."""
    try:
        validate_payload(kind, json.loads(text))
    except json.JSONDecodeError:
        return seq, f"event {seq}: the payload is not valid JSON"
    except EventLogError as err:
        return seq, f"event {seq}: {err}"
    return None


def _head_problem(head: tuple[int, str] | None, last_seq: int, last_hash: str) -> tuple[int, str] | None:
    """(bad seq, reason) if the head record disagrees with the intact rows before it, or None."""
    if head is None:
        return (1, "the chain head record is missing") if last_seq else None
    head_seq, head_hash = head
    if head_seq > last_seq:
        return (
            last_seq + 1,
            f"log truncated: the head records {head_seq} events, the last present is {last_seq}",
        )
    if head_seq < last_seq:
        return (
            head_seq + 1,
            f"events after {head_seq} were added outside the log (the head does not know them)",
        )
    if head_hash != last_hash:
        return last_seq, f"the head hash differs from the hash of event {last_seq}"
    return None


# --- the run lock ------------------------------------------------------------------------------------


@contextmanager
def run_lock(project_dir: str | Path) -> Iterator[Path]:
    """Hold the one-run-per-project lock for the duration of the block.

    The lock is an flock on the project directory itself, so deleting `run.lock` (which only names the
    holder's pid for the refusal message) cannot let a second run in. The kernel drops the lock when the
    process ends, however it ends, so a killed run never leaves a stale lock behind.
    """
    path = Path(project_dir) / LOCK_FILE
    try:
        fd = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise UsageError(f"project directory {project_dir} does not exist") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = path.read_text(errors="replace").strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise UsageError(
                f"project {project_dir} is already being run by process {holder}; "
                "wait for that run to finish or stop it, then try again"
            ) from None
        try:
            path.write_text(f"{os.getpid()}\n")
        except OSError as err:
            raise environment_fault(err, path) or UsageError(
                f"cannot write the run lock {path}: {err.strerror}"
            ) from None
        yield path
    finally:
        os.close(fd)


# --- fold: the run state the events add up to -----------------------------------------------------------


@dataclass(slots=True)
class TaskRecord:
    """Everything the log says about one task key."""

    key: str
    kind: str
    generation: int
    label: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = "submitted"
    submissions: int = 0
    result: dict[str, Any] | None = None
    wall_time: float | None = None
    failure_kind: str = ""
    message: str = ""


@dataclass
class RunState:
    """The state of a run as its events add up; built by `fold`, never stored."""

    state: LoopState | None = None
    generation: int = 0
    state_reason: str = ""  # why the loop entered `state`
    config_hash: str | None = None
    config: dict[str, Any] | None = None
    site: str | None = None
    n_resumes: int = 0
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    structures: dict[int, dict[str, list[str]]] = field(
        default_factory=dict
    )  # generation -> config_type -> uuids
    datasets: dict[int, dict[str, Any]] = field(default_factory=dict)  # dataset.extended payloads
    models: dict[int, dict[str, Any]] = field(default_factory=dict)  # model.trained payloads
    explorations: dict[int, dict[str, Any]] = field(default_factory=dict)  # exploration.finished payloads
    selections: dict[int, dict[str, Any]] = field(default_factory=dict)  # selection.made payloads
    assessments: list[dict[str, Any]] = field(default_factory=list)  # assessment.finished payloads, in order
    verdict: dict[str, Any] | None = None  # the run's assessment made since the current state was entered
    finished: bool = False
    outcome: Literal["done", "failed"] | None = None
    reason: str = ""
    n_events: int = 0
    last_seq: int = 0

    @property
    def completed_keys(self) -> set[str]:
        return {key for key, task in self.tasks.items() if task.status == "completed"}

    @property
    def pending_keys(self) -> list[str]:
        """Submitted but neither completed nor failed, in submission order: to submit again on resume."""
        return [key for key, task in self.tasks.items() if task.status == "submitted"]

    def labels(self, status: TaskStatus, generation: int | None = None) -> list[TaskRecord]:
        """DFT tasks with this status, of one generation or of all."""
        return [
            task
            for task in self.tasks.values()
            if task.kind == "dft" and task.status == status and generation in (None, task.generation)
        ]

    def failed_rounds(self) -> int:
        """How many of the run's own assessments found the potential not usable."""
        return sum(1 for a in self.assessments if a["source"] == "run" and not a["usable"])

    def aim(self, generation: int) -> tuple[int, dict[str, Any] | None]:
        """The exploration round of `generation` and the failed assessment it aims at (round 0: none)."""
        failed = [a for a in self.assessments if a["source"] == "run" and not a["usable"]]
        if failed and failed[-1]["generation"] == generation:
            return len(failed), failed[-1]
        return 0, None

    def labels_done(self, generation: int | None = None) -> list[TaskRecord]:
        return self.labels("completed", generation)

    def labels_failed(self, generation: int | None = None) -> list[TaskRecord]:
        return self.labels("failed", generation)


def _task(state: RunState, p: dict[str, Any]) -> TaskRecord:
    task = state.tasks.get(p["key"])
    if task is None:
        task = state.tasks[p["key"]] = TaskRecord(p["key"], p["kind"], p["generation"])
    return task


def _on_run_started(state: RunState, p: dict[str, Any]) -> None:
    state.config_hash, state.config, state.site = p["config_hash"], p["config"], p["site"]


def _on_run_resumed(state: RunState, p: dict[str, Any]) -> None:
    state.config_hash, state.site = p["config_hash"], p["site"]
    state.n_resumes += 1
    state.finished, state.outcome, state.reason = False, None, ""


def _on_state_entered(state: RunState, p: dict[str, Any]) -> None:
    state.state, state.generation, state.state_reason = p["state"], p["generation"], p["reason"]
    state.verdict = None


def _on_assessment_finished(state: RunState, p: dict[str, Any]) -> None:
    state.assessments.append(p)
    if p["source"] == "run":
        state.verdict = p


def _submit(state: RunState, p: dict[str, Any]) -> TaskRecord:
    """task.submitted and task.retried: the key is (again) in flight."""
    task = _task(state, p)
    task.status = "submitted"
    task.submissions += 1
    return task


def _on_task_submitted(state: RunState, p: dict[str, Any]) -> None:
    task = _submit(state, p)
    task.label, task.inputs = p.get("label", ""), p.get("inputs", {})


def _on_task_completed(state: RunState, p: dict[str, Any]) -> None:
    task = _task(state, p)
    task.status, task.result, task.wall_time = "completed", p["result"], p["wall_time"]


def _on_task_failed(state: RunState, p: dict[str, Any]) -> None:
    task = _task(state, p)
    task.status, task.failure_kind, task.message = "failed", p["failure_kind"], p["message"]


def _on_structures_added(state: RunState, p: dict[str, Any]) -> None:
    by_type = state.structures.setdefault(p["generation"], {})
    by_type.setdefault(p["config_type"], []).extend(p["uuids"])


def _on_run_finished(state: RunState, p: dict[str, Any]) -> None:
    state.finished, state.outcome, state.reason = True, p["outcome"], p["reason"]


def _on_run_retried(state: RunState, p: dict[str, Any]) -> None:
    state.finished, state.outcome, state.reason = False, None, ""
    for key in p["tasks"]:  # forgotten, so the stage submits them as new tasks
        state.tasks.pop(key, None)
    if p["state"] == "DFT":  # the one summary a stage appends before it can fail: recounted on retry
        state.datasets.pop(p["generation"], None)


def _per_generation(attribute: str) -> Callable[[RunState, dict[str, Any]], None]:
    def record(state: RunState, p: dict[str, Any]) -> None:
        getattr(state, attribute)[p["generation"]] = p

    return record


_APPLY: dict[str, Callable[[RunState, dict[str, Any]], object]] = {
    "run.started": _on_run_started,
    "run.resumed": _on_run_resumed,
    "state.entered": _on_state_entered,
    "task.submitted": _on_task_submitted,
    "task.completed": _on_task_completed,
    "task.failed": _on_task_failed,
    "task.retried": _submit,
    "structures.added": _on_structures_added,
    "dataset.extended": _per_generation("datasets"),
    "model.trained": _per_generation("models"),
    "exploration.finished": _per_generation("explorations"),
    "selection.made": _per_generation("selections"),
    "assessment.finished": _on_assessment_finished,
    "run.retried": _on_run_retried,
    "run.finished": _on_run_finished,
}


def fold(events: Iterable[Event], start: RunState | None = None) -> RunState:
    """The run state the events add up to; pure: the same events always give the same state.

    With `start`, the events continue that state, which is updated in place and returned: the workflow
    folds each event it appends into the state it holds instead of replaying the whole log.
    """
    state = RunState() if start is None else start
    for event in events:
        _APPLY[event.kind](state, event.payload)
        state.n_events += 1
        state.last_seq = event.seq
    return state
