"""A validated site turned into a `parsl.Config`: the one place that knows Parsl's executor and provider classes."""

import shlex
import sys
from pathlib import Path

from parsl.addresses import address_by_hostname, address_by_interface
from parsl.config import Config
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.launchers import MpiExecLauncher, SimpleLauncher, SingleNodeLauncher, SrunLauncher
from parsl.launchers.base import Launcher
from parsl.providers import LocalProvider
from parsl.providers.base import ExecutionProvider

from .jobs import LEDGER, RecordedPBSProProvider, RecordedSlurmProvider
from .lifeline import interchange_command, process_identity
from .schema import (
    HTEXConfig,
    LauncherConfig,
    LocalProviderConfig,
    PBSProProviderConfig,
    SiteConfig,
    SlurmProviderConfig,
    ThreadsConfig,
)


def build_parsl_config(site: SiteConfig, run_dir: Path) -> Config:
    """One Parsl executor per site executor block; Parsl's runinfo goes to `run_dir`.

    Nothing is started: `parsl.load(config)` does that. Batch providers construct without a scheduler and
    record the jobs they submit in `run_dir` (see `jobs.cancel_leftover_jobs`).
    """
    return Config(
        executors=[_executor(block, site, Path(run_dir) / LEDGER) for block in site.executors],
        run_dir=str(run_dir),
        strategy_period=site.strategy_period,
        retries=site.retries,
        retry_handler=note_failed_try,
    )


#: Key of a Parsl task record holding why each earlier try of the task failed (Parsl keeps only the last).
FAILED_TRIES = "autopipe_failed_tries"


def note_failed_try(exception: BaseException, task_record: dict) -> float:
    """Parsl's retry handler: keep why a try failed (e.g. `ManagerLost`: its block was lost), at Parsl's
    usual cost of 1 per failure, so the task's event can list its lost tries."""
    task_record.setdefault(FAILED_TRIES, []).append(f"{type(exception).__name__}: {exception}"[:300])
    return 1.0


def venv_path_line() -> str:
    """Shell line putting this interpreter's bin first on PATH, where HTEX finds process_worker_pool.py."""
    return f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"'


def _executor(
    block: HTEXConfig | ThreadsConfig, site: SiteConfig, ledger: Path
) -> HighThroughputExecutor | ThreadPoolExecutor:
    if isinstance(block, ThreadsConfig):
        return ThreadPoolExecutor(label=block.label, max_threads=block.max_threads)
    local = isinstance(block.provider, LocalProviderConfig)
    return HighThroughputExecutor(
        label=block.label,
        provider=_provider(block.provider, site.env, ledger),
        address="127.0.0.1" if local else _address(block.interface),
        # From this interpreter (found whether or not the venv is activated), bound to this driver's life.
        interchange_launch_cmd=interchange_command(process_identity()),
        max_workers_per_node=block.max_workers_per_node,
        cores_per_worker=block.cores_per_worker,
        mem_per_worker=block.mem_per_worker,
        available_accelerators=block.available_accelerators,
        heartbeat_period=site.heartbeat_period,
        heartbeat_threshold=site.heartbeat_threshold,
    )


def _address(interface: str | None) -> str:
    return address_by_interface(interface) if interface else address_by_hostname()


def _provider(
    spec: LocalProviderConfig | SlurmProviderConfig | PBSProProviderConfig, env: dict[str, str], ledger: Path
) -> ExecutionProvider:
    """The site's worker_init (modules, ...) runs first, then the site's `env`, then the venv line: workers
    must run the driver's Python and Parsl (HTEX refuses a version mismatch), even if a module put another
    Python on PATH."""
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())
    common = {
        "nodes_per_block": spec.nodes_per_block,
        "init_blocks": spec.init_blocks,
        "min_blocks": spec.min_blocks,
        "max_blocks": spec.max_blocks,
        "worker_init": "\n".join(line for line in (spec.worker_init, exports, venv_path_line()) if line),
        "launcher": _launcher(spec.launcher),
    }
    if isinstance(spec, LocalProviderConfig):
        return LocalProvider(**common)
    batch = dict(
        common,
        account=spec.account,
        walltime=spec.walltime,
        scheduler_options=spec.scheduler_options,
        ledger=ledger,
        poll_period=spec.poll_period,
    )
    if isinstance(spec, SlurmProviderConfig):
        return RecordedSlurmProvider(
            partition=spec.partition,
            qos=spec.qos,
            constraint=spec.constraint,
            cores_per_node=spec.cores_per_node,
            mem_per_node=spec.mem_per_node,
            gpus_per_node=spec.gpus_per_node,
            exclusive=spec.exclusive,
            **batch,
        )
    return RecordedPBSProProvider(
        queue=spec.queue, cpus_per_node=spec.cpus_per_node, select_options=spec.select_options, **batch
    )


def _launcher(spec: LauncherConfig) -> Launcher:
    if spec.type == "srun":
        return SrunLauncher(overrides=spec.overrides)
    if spec.type == "mpiexec":
        return MpiExecLauncher(bind_cmd=spec.bind_cmd or "--bind-to", overrides=spec.overrides)
    if spec.type == "simple":
        return SimpleLauncher()
    return SingleNodeLauncher()
