"""Does the workflow's cost per task stay flat as a generation grows? 100, 1,000 and 10,000 DFT tasks.

Each task is a stand-in for pw.x: a real process (`sleep D`) started by the worker, so the worker side costs
what a label's launch costs, without the physics. The tasks go through `WorkflowManager.run_tasks` (the path
every stage takes: durable `task.submitted`/`task.completed` events, a clean task directory, an fsynced
result.json) on a real Parsl site, a fresh project per batch. Reported per batch: wall time, the overhead per
task beyond the ideal N*D/workers, the time spent appending events, the log's size and its replay time.

Run: `.venv/bin/python benchmarks/bench_scale.py [--duration 0.01] [--sizes 100 1000 10000] SITE...`
e.g. `local`, or `slurm-local` after `eval "$(scripts/slurm-cluster.sh start)"`.
"""

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import parsl

from autopipe import dispatch
from autopipe.config import load_config
from autopipe.events import EventStore, fold
from autopipe.executors import build_parsl_config, load_site
from autopipe.workflow import WorkflowManager

INPUT = "project: {name: scale}\nelements: [Al]\nstructures: {generator: {prototype: fcc}}\ndft: {engine: emt}\n"


def batch(root: Path, site_name: str, executor_for: dict[str, str], n: int, duration: float) -> dict[str, float]:
    """Run one generation of `n` simulated DFT tasks in a fresh project under `root`."""
    (root / "input.yaml").write_text(INPUT)
    config = load_config(root / "input.yaml")
    config.project_dir.mkdir()
    manager = WorkflowManager(config, site_name, executor_for, INPUT)
    appending = 0.0
    with EventStore(config.project_dir / "events.sqlite") as store:
        manager.open(store)
        append = manager.append

        def timed_append(kind: str, payload: object) -> None:
            nonlocal appending
            start = time.perf_counter()
            append(kind, payload)
            appending += time.perf_counter() - start

        manager.append = timed_append
        specs = [{"key": f"dft-{i:06d}", "label": "", "kwargs": {"args": ["sleep", str(duration)]},
                  "task_dir": manager.task_dir(0, "dft", f"t{i:06d}")} for i in range(n)]
        start = time.perf_counter()
        outcomes = manager.run_tasks("dft", 0, specs)
        wall = time.perf_counter() - start
        assert len(outcomes) == n and all("failed" not in o for o in outcomes.values())
        start = time.perf_counter()
        n_events = len(fold(store.events()).tasks)
        replay = time.perf_counter() - start
        assert n_events == n
    size = (config.project_dir / "events.sqlite").stat().st_size
    return {"wall": wall, "appending": appending, "replay": replay, "log_mb": size / 1e6}


def bench_site(site_name: str, sizes: list[int], duration: float) -> list[tuple[int, dict[str, float]]]:
    site = load_site(site_name)
    label = site.executor_for("dft")
    block = next(b for b in site.executors if b.label == label)
    workers = getattr(block, "max_workers_per_node", None) or getattr(block, "max_threads", 1)
    executor_for = {kind: site.executor_for(kind) for kind in ("dft", "train", "md", "light")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dfk = parsl.load(build_parsl_config(site, Path(tmp) / "parsl"))
        try:
            warm = parsl.python_app(os.getpid, executors=[label])
            warm().result()  # the first task waits for the block (and on SLURM for the job) to start
            for n in sizes:
                root = Path(tmp) / f"n{n}"
                root.mkdir()
                result = batch(root, site_name, executor_for, n, duration)
                result["overhead_ms"] = 1000 * (result["wall"] - n * duration / workers) / n
                rows.append((n, result))
                print_row(site_name, workers, n, result)
        finally:
            dfk.cleanup()
            parsl.clear()
    return rows


def print_row(site: str, workers: int, n: int, r: dict[str, float]) -> None:
    print(f"{site:12}{workers:>8}{n:>8}{r['wall']:>10.1f}{r['overhead_ms']:>18.2f}"
          f"{1000 * r['appending'] / n:>18.2f}{r['log_mb']:>10.1f}{r['replay']:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="+")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 10000])
    parser.add_argument("--duration", type=float, default=0.01, help="seconds each simulated DFT task sleeps")
    args = parser.parse_args()
    logging.getLogger("parsl").propagate = False
    dispatch.APP_FUNCTIONS["dft"] = "subprocess:call"  # a real process per task: `sleep D`, returns 0
    print(f"simulated DFT task: a `sleep {args.duration}` process")
    print(f"{'site':12}{'workers':>8}{'tasks':>8}{'wall s':>10}{'overhead ms/task':>18}"
          f"{'events ms/task':>18}{'log MB':>10}{'replay s':>11}")
    for site in args.sites:
        bench_site(site, args.sizes, args.duration)


if __name__ == "__main__":
    main()
