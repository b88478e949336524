"""Every number of the status report, computed read-only from the event log, structures.db and the walkers'
gamma logs, as plain JSON: what `mlip-auto status --json` prints, the terminal summary shows and the charts
draw. Keeping the figures apart from their drawing lets scripts and tests check them directly.

Example::

    figures = collect(Path("al_quickstart"))
    figures["summary"]["labels"]          # {'done': 17, 'in_flight': 0, 'failed': 1}
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopipe.dispatch import EXECUTOR_KIND
from autopipe.events import RunState
from autopipe.project_reader import LogEntry, StructureRow, damage_message, read_log, read_structures
from autopipe.replay import fold_known, state_summary, trusted_events

GAMMA_LOG = "gamma.csv"  # written by apps/explore/walker.py next to each walker's candidates
GAMMA_BIN = 0.25  # histogram bin width in log10(gamma)
LATEST_FAILURES = 10
WALKERS_READ = 100  # gamma logs read per generation at most
FINAL_STATES = ("DONE", "FAILED")  # no time is spent in them
_RANKS = re.compile(r"(?:^|\s)(?:-np|-n|--np|--ntasks)[\s=](\d+)")


def collect(project: Path) -> dict[str, Any]:
    """All figures of `project`; a missing, empty or unreadable project is a UsageError.

    On a damaged log the figures are those of the events before the damage; `log_intact` and
    `first_bad_seq` say so.
    """
    log = read_log(project)
    events = trusted_events(log)
    structures = read_structures(project)  # after the events: data is written before the events naming it
    state = fold_known(events)
    config = state.config or {}
    intervals = _state_intervals(events)
    return {
        "project": str(project),
        **log.integrity(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": _summary(state, events, config, intervals),
        "generations": _generations(state),
        "assessments": _assessments(state),
        "composition": _composition(structures),
        "elements": _elements(structures),
        "gamma": _gamma(project, state, config),
        "timeline": _timeline(state, events, intervals),
        "failures": _failures(events),
    }


def log_warning(figures: dict[str, Any]) -> str:
    """The damaged log's warning the report shows above its figures ('' when the log is intact)."""
    return "" if figures["log_intact"] else damage_message(figures["project"], figures["first_bad_seq"])


def _time(event: LogEntry) -> datetime:
    return datetime.fromisoformat(event.time)


def cores_per_dft_task(config: dict[str, Any]) -> int:
    """MPI ranks of one DFT task as its command line gives them (`mpirun -np 4 pw.x`), else 1."""
    match = _RANKS.search(str(config.get("dft", {}).get("command", "")))
    return int(match.group(1)) if match else 1


def _summary(
    state: RunState, events: list[LogEntry], config: dict[str, Any], intervals: list[dict[str, Any]]
) -> dict[str, Any]:
    dft = [task for task in state.tasks.values() if task.kind == "dft"]
    wall = sum(task.wall_time or 0.0 for task in dft)
    wall += sum(
        a.get("wall_time", 0.0)
        for e in events
        if e.kind == "task.failed" and e.payload["kind"] == "dft"
        for a in e.payload.get("attempts", [])
    )
    cores = cores_per_dft_task(config)
    stage_time: Counter[str] = Counter()
    for interval in intervals:
        if interval["name"] not in FINAL_STATES:
            stage_time[interval["name"]] += interval["seconds"]
    return {
        **state_summary(state),
        "site": state.site,
        "events": len(events),
        "last_event": events[-1].time,
        "labels": {
            "done": len(state.labels_done()),
            "in_flight": len(state.labels("submitted")),
            "failed": len(state.labels_failed()),
        },
        "dft_wall_time_s": round(wall, 3),
        "dft_cores_per_task": cores,
        "dft_core_hours": round(wall * cores / 3600, 6),
        "stage_time_s": {name: round(seconds, 3) for name, seconds in stage_time.items()},
        "stop_reason": state.reason if state.finished else "",
        "assessment": _verdict(state.assessments[-1]) if state.assessments else "",
    }


def _verdict(assessment: dict[str, Any]) -> str:
    word = "usable" if assessment["usable"] else "not usable"
    reason = f" ({assessment['reason']})" if assessment["reason"] else ""
    return f"generation {assessment['generation']}: {word}{reason}"


def _state_intervals(events: list[LogEntry]) -> list[dict[str, Any]]:
    """When the loop was in which state; an interval ends at the next state, or where a run stopped."""
    intervals: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    previous: LogEntry | None = None

    def close(at: datetime) -> None:
        if current is not None:
            intervals.append(
                {**current, "end": at.isoformat(), "seconds": (at - current["_start"]).total_seconds()}
            )

    for event in events:
        if event.kind == "state.entered":
            close(_time(event))
            current = {
                "name": event.payload["state"],
                "generation": event.payload["generation"],
                "start": event.time,
                "_start": _time(event),
            }
        elif event.kind == "run.resumed" and current is not None and previous is not None:
            close(_time(previous))  # the time between a crash and its resume is no stage's time
            current = {**current, "start": event.time, "_start": _time(event)}
        previous = event
    close(_time(events[-1]))
    return [{k: v for k, v in interval.items() if k != "_start"} for interval in intervals]


def _generations(state: RunState) -> list[dict[str, Any]]:
    """Validation errors, exploration and selection per trained generation."""
    rows = []
    for generation, model in sorted(state.models.items()):
        metrics = model.get("metrics", {})
        validation, train = metrics.get("validation") or {}, metrics.get("train") or {}
        explored = state.explorations.get(generation, {})
        selection = state.selections.get(generation)
        rows.append(
            {
                "generation": generation,
                "n_train": model.get("n_train"),
                "n_validation": model.get("n_validation"),
                "force_rmse_mev_a": validation.get("force_rmse_mev_a"),
                "energy_rmse_mev_atom": validation.get("energy_rmse_mev_atom"),
                "train_force_rmse_mev_a": train.get("force_rmse_mev_a"),
                "train_energy_rmse_mev_atom": train.get("energy_rmse_mev_atom"),
                "max_gamma": explored.get("max_gamma"),
                "n_candidates": explored.get("n_candidates"),
                "n_selected": len(selection["uuids"]) if selection else None,
            }
        )
    return rows


#: What the report keeps of each row of an assessment (apps/assess/compare.py writes them).
ROW_KEYS = ("property", "name", "unit", "dft", "potential", "error", "error_percent", "tolerance", "passed",
            "note")  # fmt: skip


def _assessments(state: RunState) -> list[dict[str, Any]]:
    """Each assessment against fresh DFT (docs/assessment.md): its verdict and every compared number."""
    return [
        {
            "generation": a["generation"],
            "round": a["round"],
            "source": a["source"],
            "verdict": "usable" if a["usable"] else "not usable",
            "reason": a["reason"],
            "rows": [{key: row.get(key) for key in ROW_KEYS} for row in a["rows"]],
        }
        for a in state.assessments
    ]


def _composition(structures: list[StructureRow]) -> list[dict[str, Any]]:
    """Structures and labels per (generation, config type)."""
    totals: Counter[tuple[int, str]] = Counter()
    labelled: Counter[tuple[int, str]] = Counter()
    for row in structures:
        totals[(row.generation, row.config_type)] += 1
        labelled[(row.generation, row.config_type)] += row.labelled
    return [
        {"generation": g, "config_type": kind, "structures": n, "labelled": labelled[(g, kind)]}
        for (g, kind), n in sorted(totals.items())
    ]


def _elements(structures: list[StructureRow]) -> list[dict[str, Any]]:
    """Atoms of each element in labelled structures, per generation."""
    atoms: Counter[tuple[int, str]] = Counter()
    for row in structures:
        if row.labelled:
            for element, n in row.elements.items():
                atoms[(row.generation, element)] += n
    return [{"generation": g, "element": element, "atoms": n} for (g, element), n in sorted(atoms.items())]


def _gamma(project: Path, state: RunState, config: dict[str, Any]) -> dict[str, Any]:
    """Histogram of the per-frame max extrapolation grade of finished walkers, per generation.

    At most `WALKERS_READ` walkers per generation are read, evenly spread over its walkers, so a campaign
    with thousands of walkers still reports in a second; `walkers` says how many were read of how many.
    """
    finished: dict[int, list[str]] = defaultdict(list)
    for task in state.tasks.values():
        candidates = (task.result or {}).get("candidates")
        if task.kind == "explore" and task.status == "completed" and isinstance(candidates, str):
            finished[task.generation].append(os.path.join(project, os.path.dirname(candidates), GAMMA_LOG))
    counts: Counter[tuple[int, float]] = Counter()
    walkers = {}
    for generation, logs in sorted(finished.items()):
        chosen = logs[:: math.ceil(len(logs) / WALKERS_READ)]
        walkers[str(generation)] = {"read": len(chosen), "finished": len(logs)}
        for path in chosen:
            for gamma in _frame_gammas(path):
                start = math.floor(math.log10(max(gamma, 1e-3)) / GAMMA_BIN) * GAMMA_BIN
                counts[(generation, round(start, 4))] += 1
    exploration = config.get("exploration", {})
    return {
        "thresholds": {"select": exploration.get("gamma_select"), "halt": exploration.get("gamma_halt")},
        "walkers": walkers,
        "histogram": [
            {"generation": g, "gamma_from": 10**start, "gamma_to": 10 ** (start + GAMMA_BIN), "frames": n}
            for (g, start), n in sorted(counts.items())
        ],
    }


def _frame_gammas(path: str) -> list[float]:
    """The max_gamma column of one walker's gamma log; a missing or half-written file gives what it has."""
    try:
        with open(path) as handle:
            column = handle.readline().rstrip("\n").split(",").index("max_gamma")
            rows = [line.split(",") for line in handle]
    except (OSError, ValueError):
        return []
    gammas = []
    for row in rows:
        try:
            gammas.append(float(row[column]))
        except (IndexError, ValueError):  # a line the walker is still writing
            break
    return gammas


def _timeline(
    state: RunState, events: list[LogEntry], intervals: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Bars for a Gantt chart: the loop's states, and per (task kind, generation) when its tasks ran."""
    bars = [
        {
            "lane": "loop state",
            "name": i["name"],
            "generation": i["generation"],
            "start": i["start"],
            "end": i["end"],
            "detail": f"{i['name']} gen {i['generation']}: {i['seconds']:.1f} s",
        }
        for i in intervals
    ]
    spans: dict[tuple[str, int], list[str]] = defaultdict(list)
    for event in events:
        if event.kind.startswith("task."):
            spans[(event.payload["kind"], event.payload["generation"])].append(event.time)
    statuses: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for task in state.tasks.values():
        statuses[(task.kind, task.generation)][task.status] += 1
    for (kind, generation), times in spans.items():
        status = statuses[(kind, generation)]
        executor = EXECUTOR_KIND.get(kind, kind)
        end = times[-1] if not status["submitted"] else events[-1].time
        bars.append(
            {
                "lane": f"{kind} tasks (executor {executor})",
                "name": kind,
                "generation": generation,
                "start": times[0],
                "end": end,
                "detail": f"{kind} gen {generation} on {executor}: {status.total()} tasks, "
                f"{status['completed']} done, {status['failed']} failed, {status['submitted']} in flight",
            }
        )
    return bars


def _failures(events: list[LogEntry]) -> list[dict[str, Any]]:
    """The latest failed tasks, newest first, with the recoveries their attempts tried."""
    failed = [e for e in events if e.kind == "task.failed"][-LATEST_FAILURES:]
    return [
        {
            "seq": e.seq,
            "time": e.time,
            "kind": e.payload["kind"],
            "generation": e.payload["generation"],
            "key": e.payload["key"],
            "failure_kind": e.payload["failure_kind"],
            "message": e.payload["message"],
            "recoveries": [a["handler"] for a in e.payload.get("attempts", []) if a.get("handler")],
            "attempts": len(e.payload.get("attempts", [])),
        }
        for e in reversed(failed)
    ]
