"""What a site asks the machine for, per kind of task, and the combinations no node can satisfy.

A site file can be valid key by key and still be impossible: 64 workers of 64 MPI ranks each on a 64-core
node, more GPUs pinned than the node has, a DFT timeout longer than the block's walltime. `site_problems`
finds those (`load_site` refuses a site with any), and `resources_text` is what `mlip-auto validate --site`
prints: for each kind, where it runs, nodes, workers and the MPI ranks of one DFT task.
"""

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from autopipe.errors import ConfigError

from .schema import TASK_KINDS, HTEXConfig, SiteConfig, ThreadsConfig

#: Programs that start MPI ranks, and the options that give their number.
MPI_LAUNCHERS = {"srun", "mpirun", "mpiexec", "aprun", "mpiexec.hydra"}
RANK_OPTIONS = {"-n", "-np", "--np", "--ntasks", "-ntasks"}


@dataclass(frozen=True)
class KindResources:
    """Where one kind of task runs; None where the site leaves a number to the scheduler or the node."""

    kind: str
    label: str
    where: str
    nodes_per_block: int | None
    max_blocks: int | None
    workers_per_node: int | None
    cores_per_node: int | None
    walltime: str | None
    ranks_per_task: int | None = None


def launcher_ranks(command: str) -> int | None:
    """MPI ranks a DFT command line starts: 1 without a launcher, None if the launcher picks the number.

    >>> launcher_ranks("srun --ntasks=64 --cpu-bind=cores pw.x -nk 4"), launcher_ranks("pw.x")
    (64, 1)
    """
    words = shlex.split(command)
    if not words or Path(words[0]).name not in MPI_LAUNCHERS:
        return 1
    for word, following in zip(words, [*words[1:], ""], strict=True):
        option, _, value = word.partition("=")
        if option in RANK_OPTIONS:
            number = value or following
            return int(number) if number.isdigit() else None
    return None


def node_cores(block: HTEXConfig | ThreadsConfig) -> int | None:
    """Cores of one node of `block`: asked of the scheduler, or this machine's for local work."""
    if isinstance(block, ThreadsConfig) or block.provider.type == "local":
        return os.cpu_count()
    if block.provider.type == "slurm":
        return block.provider.cores_per_node
    # PBS: only an explicit ncpus says something; Parsl's default of 1 is a placeholder, not the node.
    return block.provider.cpus_per_node if "cpus_per_node" in block.provider.model_fields_set else None


def workers_per_node(block: HTEXConfig | ThreadsConfig) -> int | None:
    """Concurrent tasks on one node, as Parsl will compute them (None: decided on the node at run time)."""
    if isinstance(block, ThreadsConfig):
        return block.max_threads
    cores = node_cores(block)
    by_cores = None if cores is None else max(1, int(cores // block.cores_per_worker))
    if block.max_workers_per_node is None:
        return by_cores
    return block.max_workers_per_node if by_cores is None else min(block.max_workers_per_node, by_cores)


def resolve(site: SiteConfig, dft_command: str | None) -> list[KindResources]:
    """The resources of every task kind; `dft_command` is the input's pw.x line (the site's wins)."""
    command = site.dft_command or dft_command
    rows = []
    for kind in TASK_KINDS:
        label = site.executor_for(kind)
        block = next(b for b in site.executors if b.label == label)
        ranks = launcher_ranks(command) if kind == "dft" and command else None
        if isinstance(block, ThreadsConfig):
            rows.append(KindResources(kind, label, "threads of the driver", None, None, block.max_threads,
                                      node_cores(block), None, ranks))
            continue
        provider = block.provider
        rows.append(KindResources(
            kind, label, _where(block), provider.nodes_per_block, provider.max_blocks, workers_per_node(block),
            node_cores(block), getattr(provider, "walltime", None), ranks,
        ))
    return rows


def site_problems(site: SiteConfig, dft_command: str | None = None, dft_timeout: float | None = None) -> list[str]:
    """Combinations of keys that cannot work, one "key: what is wrong and what would fit" line each."""
    problems = []
    for index, block in enumerate(site.executors):
        if isinstance(block, HTEXConfig):
            problems += _block_problems(f"executors[{index}]", block)
    for row in resolve(site, dft_command):
        if row.kind != "dft":
            continue
        ranks = (row.ranks_per_task or 0) * (row.workers_per_node or 0)
        if row.cores_per_node and ranks > row.cores_per_node:
            key = "dft_command" if site.dft_command else "dft.command (input)"
            problems.append(
                f"{key}: {row.ranks_per_task} MPI ranks per DFT task x {row.workers_per_node} DFT workers per "
                f"node of executor '{row.label}' = {ranks} ranks on {row.cores_per_node} cores; lower the ranks "
                f"or set max_workers_per_node of '{row.label}' to at most "
                f"{max(1, row.cores_per_node // row.ranks_per_task)}"
            )
        if dft_timeout is not None and row.walltime is not None and dft_timeout > _seconds(row.walltime):
            problems.append(
                f"walltime of executor '{row.label}': {row.walltime} is shorter than one DFT attempt may take "
                f"(dft.timeout = {dft_timeout:g} s in the input); raise the walltime or lower dft.timeout"
            )
    return problems


def resources_text(site: SiteConfig, dft_command: str | None, dft_timeout: float | None) -> str:
    """The table `validate --site` prints; ConfigError (one paragraph) if the site cannot run the input."""
    problems = site_problems(site, dft_command, dft_timeout)
    if problems:
        raise ConfigError(
            f"Site '{site.name}' cannot run this input:\n"
            + "\n".join(f"  - {line}" for line in problems)
            + "\nEvery key is described in docs/sites.md."
        )
    header = ("kind", "executor", "where", "nodes/block", "max blocks", "workers/node", "cores/node", "walltime",
              "ranks/DFT task")
    lines = [header] + [
        (r.kind, r.label, r.where, *(_text(v) for v in (r.nodes_per_block, r.max_blocks, r.workers_per_node,
                                                       r.cores_per_node, r.walltime, r.ranks_per_task)))
        for r in resolve(site, dft_command)
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                      for line in lines)
    return f"Site '{site.name}': resources per kind of task (- = decided by the scheduler or the node)\n{table}"


def _block_problems(key: str, block: HTEXConfig) -> list[str]:
    provider, problems = block.provider, []
    cores = node_cores(block)
    if block.max_workers_per_node and cores and block.max_workers_per_node * block.cores_per_worker > cores:
        problems.append(
            f"{key}.max_workers_per_node: {block.max_workers_per_node} workers x {block.cores_per_worker:g} "
            f"cores_per_worker need {block.max_workers_per_node * block.cores_per_worker:g} cores, but a node "
            f"has {cores}; at most {int(cores // block.cores_per_worker)} workers fit"
        )
    accelerators = block.available_accelerators
    gpus = len(accelerators) if isinstance(accelerators, list) else accelerators
    node_gpus = getattr(provider, "gpus_per_node", None)
    if node_gpus is not None and gpus > node_gpus:
        problems.append(
            f"{key}.available_accelerators: {gpus} GPUs pinned per node, but provider.gpus_per_node is "
            f"{node_gpus}; use at most {node_gpus}"
        )
    node_memory = getattr(provider, "mem_per_node", None)
    workers = workers_per_node(block)
    if block.mem_per_worker and node_memory and workers and block.mem_per_worker * workers > node_memory:
        problems.append(
            f"{key}.mem_per_worker: {workers} workers x {block.mem_per_worker:g} GB = "
            f"{workers * block.mem_per_worker:g} GB, but provider.mem_per_node is {node_memory} GB"
        )
    return problems


def _where(block: HTEXConfig) -> str:
    provider = block.provider
    if provider.type == "local":
        return "this machine"
    queue = getattr(provider, "partition", None) or getattr(provider, "queue", None)
    return f"{provider.type} jobs" + (f" ({queue})" if queue else "")


def _seconds(walltime: str) -> int:
    hours, minutes, seconds = (int(part) for part in walltime.split(":"))
    return 3600 * hours + 60 * minutes + seconds


def _text(value: object) -> str:
    return "-" if value is None else str(value)
