"""How fast the event log is: durable single appends, and replaying a long log into run state.

A run appends one event per state change and per task, each fsynced before the workflow acts on it,
and every resume or `mlip-auto status` reads the whole log and folds it. This measures both.

    .venv/bin/python benchmarks/bench_events.py [--appends 500] [--events 100000] [--dir /path/on/the/disk]
"""

import argparse
import tempfile
import time
from pathlib import Path

from autopipe.events import EVENTS_FILE, EventStore, fold


def task_events(i: int) -> list[tuple[str, dict]]:
    """A DFT task's life in the log: submitted, then completed with a small result."""
    key, generation = f"{i:064x}", i // 1000
    task = {"key": key, "kind": "dft", "generation": generation}
    result = {"uuid": f"uuid-{i}", "energy": -3.1 * i, "n_atoms": 4, "attempts": 1}
    return [
        (
            "task.submitted",
            {**task, "label": f"uuid-{i}", "inputs": {"structure": f"uuid-{i}", "ecutwfc": 25}},
        ),
        ("task.completed", {**task, "result": result, "wall_time": 4.4}),
    ]


def best_of(repeat: int, func) -> tuple[float, object]:
    """Shortest wall time of `repeat` calls, and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=500, help="durable single appends to time")
    parser.add_argument("--events", type=int, default=100_000, help="length of the log to replay")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp directory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        with EventStore(Path(tmp) / "appends.sqlite") as store:
            items = [item for i in range(args.appends // 2 + 1) for item in task_events(i)][: args.appends]
            start = time.perf_counter()
            for kind, payload in items:
                store.append(kind, payload)
            append_s = time.perf_counter() - start

        path = Path(tmp) / EVENTS_FILE
        with EventStore(path) as store:
            start = time.perf_counter()
            for first in range(0, args.events // 2, 5000):
                store.append_many(
                    item for i in range(first, min(first + 5000, args.events // 2)) for item in task_events(i)
                )
            build_s = time.perf_counter() - start

        with EventStore.open_existing(path) as store:
            read_s, events = best_of(3, store.events)
            fold_s, run = best_of(3, lambda: fold(events))
            replay_s, _ = best_of(3, lambda: fold(store.events()))
            verify_s, report = best_of(1, store.verify)
        size_mb = path.stat().st_size / 1e6

    assert report.ok and run.n_events == len(events) and not run.pending_keys
    rows = [
        (
            "durable append (synchronous=FULL)",
            f"{args.appends / append_s:,.0f} events/s",
            f"{1e3 * append_s / args.appends:.2f} ms per event",
        ),
        (
            "bulk build, append_many x5000",
            f"{len(events) / build_s:,.0f} events/s",
            f"{build_s:.1f} s, {size_mb:.0f} MB",
        ),
        (f"read {len(events):,} events", f"{read_s:.2f} s", "EventStore.events()"),
        (f"fold {len(events):,} events", f"{fold_s:.2f} s", f"{len(run.tasks):,} tasks"),
        ("replay = read + fold", f"{replay_s:.2f} s", "what a resume or a status report pays"),
        ("verify (hashes, chain, payloads)", f"{verify_s:.2f} s", "mlip-auto events verify"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
