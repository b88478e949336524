"""Per-task overhead of the workflow's dispatch versus bare Parsl, on the same local HighThroughputExecutor.

Bare: N trivial python_apps submitted at once. Workflow: the same N tasks through `WorkflowManager.run_tasks`,
which adds per task two durable event appends (submitted, completed), a clean task directory and an fsynced
result.json. Run: `.venv/bin/python benchmarks/bench_dispatch.py [N]`.
"""

import logging
import sys
import tempfile
import time
from pathlib import Path

import parsl
from parsl.app.app import python_app

from autopipe import dispatch
from autopipe.config import load_config
from autopipe.events import EventStore
from autopipe.executors import build_parsl_config, load_site
from autopipe.workflow import WorkflowManager

INPUT = """
project: {name: bench}
elements: [Al]
structures: {generator: {prototype: fcc}}
dft: {engine: emt}
"""


def echo(value: int) -> int:
    return value


def main(n: int = 500) -> None:
    logging.getLogger("parsl").propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "input.yaml").write_text(INPUT)
        config = load_config(root / "input.yaml")
        config.project_dir.mkdir()
        dfk = parsl.load(build_parsl_config(load_site("local"), root / "parsl"))
        try:
            bare_app = python_app(echo, executors=["local"])
            assert bare_app(0).result() == 0  # warm up: the first task waits for the worker pool

            start = time.perf_counter()
            futures = [bare_app(i) for i in range(n)]
            assert [f.result() for f in futures] == list(range(n))
            bare = time.perf_counter() - start

            dispatch.APP_FUNCTIONS["init"] = "builtins:dict"  # a trivial app: returns its keyword arguments
            manager = WorkflowManager(config, "local", {"light": "local"}, INPUT)
            with EventStore(config.project_dir / "events.sqlite") as store:
                manager.open(store)
                specs = [
                    {"key": f"bench-{i:06d}", "label": "", "kwargs": {"i": i},
                     "task_dir": manager.task_dir(0, "bench", f"t{i:06d}")}
                    for i in range(n)
                ]
                start = time.perf_counter()
                outcomes = manager.run_tasks("init", 0, specs)
                workflow = time.perf_counter() - start
                assert len(outcomes) == n and all("failed" not in o for o in outcomes.values())
        finally:
            dfk.cleanup()
            parsl.clear()

    print(f"{n} tasks on the local HTEX (2 workers)")
    print(f"{'':24}{'total s':>10}{'ms/task':>10}")
    print(f"{'bare Parsl':24}{bare:>10.2f}{1000 * bare / n:>10.2f}")
    print(f"{'WorkflowManager':24}{workflow:>10.2f}{1000 * workflow / n:>10.2f}")
    print(f"overhead of the workflow: {1000 * (workflow - bare) / n:.2f} ms per task")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
