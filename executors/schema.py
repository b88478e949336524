"""The site YAML as strict pydantic models: one executor block per kind of work, checked before Parsl starts.

A site names its executors (a Parsl HighThroughputExecutor on a Local/Slurm/PBSPro provider, or a thread
pool) and maps every task kind to one of them, so a typo in a label fails at load time, not mid-run.
"""

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: The kinds of work the workflow submits; each must be mapped to an executor label.
TASK_KINDS = ("dft", "train", "md", "light")


def _matching(pattern: str, allowed: str) -> AfterValidator:
    """A string check whose error says in words what is allowed (a regex in a message helps nobody)."""

    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(check)


Label = Annotated[
    str, _matching(r"[A-Za-z][A-Za-z0-9_-]*", "a letter followed by letters, digits, '_' or '-'")
]
Walltime = Annotated[
    str, _matching(r"(?!0+:00:00$)\d+:[0-5]\d:[0-5]\d", "HH:MM:SS above zero, e.g. '01:30:00'")
]


class Strict(BaseModel):
    """Unknown keys are refused: a misspelt option must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class LauncherConfig(Strict):
    """How a block starts its worker pools on the nodes it got (Parsl's launchers)."""

    type: Literal["srun", "mpiexec", "single", "simple"]
    overrides: str = Field("", description="extra flags for srun/mpiexec, e.g. '--depth=64 --ppn 1'")
    bind_cmd: str | None = Field(
        None, description="mpiexec only: CPU binding flag ('--cpu-bind' for Cray MPICH)"
    )

    @model_validator(mode="after")
    def _options_fit_type(self) -> "LauncherConfig":
        if self.overrides and self.type not in ("srun", "mpiexec"):
            raise ValueError(f"'overrides' applies to the srun and mpiexec launchers, not to '{self.type}'")
        if self.bind_cmd is not None and self.type != "mpiexec":
            raise ValueError(f"'bind_cmd' applies to the mpiexec launcher, not to '{self.type}'")
        return self


def _launcher_shorthand(value: object) -> object:
    """`launcher: srun` is short for `launcher: {type: srun}`."""
    return {"type": value} if isinstance(value, str) else value


Launcher = Annotated[LauncherConfig, BeforeValidator(_launcher_shorthand)]


class BlockSettings(Strict):
    """What every provider shares: how many blocks (jobs) of how many nodes, and what runs before workers."""

    nodes_per_block: PositiveInt = 1
    init_blocks: NonNegativeInt = 1
    min_blocks: NonNegativeInt = 0
    max_blocks: PositiveInt = 1
    worker_init: str = Field("", description="shell lines run before the worker pool starts (modules, venv)")

    @model_validator(mode="after")
    def _blocks_ordered(self) -> "BlockSettings":
        if not self.min_blocks <= self.init_blocks <= self.max_blocks:
            raise ValueError(
                f"blocks must satisfy min_blocks <= init_blocks <= max_blocks, got {self.min_blocks} <= "
                f"{self.init_blocks} <= {self.max_blocks}"
            )
        return self


class LocalProviderConfig(BlockSettings):
    """Workers on this machine (a workstation, or the node a batch job already runs on)."""

    type: Literal["local"]
    launcher: Launcher = LauncherConfig(type="single")


class BatchSettings(BlockSettings):
    """What SLURM and PBS Pro share: an account to charge, a walltime per block and raw scheduler lines."""

    account: str | None = None
    walltime: Walltime = "00:30:00"
    scheduler_options: str = Field("", description="extra #SBATCH / #PBS lines, verbatim")
    poll_period: PositiveInt = Field(
        60, description="seconds between queue polls: how soon a lost or ended block is noticed and replaced"
    )


class SlurmProviderConfig(BatchSettings):
    """Blocks submitted with sbatch."""

    type: Literal["slurm"]
    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    cores_per_node: PositiveInt | None = None
    mem_per_node: PositiveInt | None = Field(None, description="GB")
    gpus_per_node: PositiveInt | None = None
    exclusive: bool = True
    launcher: Launcher = LauncherConfig(type="srun")


class PBSProProviderConfig(BatchSettings):
    """Blocks submitted with qsub to PBS Pro."""

    type: Literal["pbspro"]
    queue: str | None = None
    cpus_per_node: PositiveInt = 1
    select_options: str = Field("", description="appended to '#PBS -l select=', e.g. 'ngpus=4'")
    launcher: Launcher = LauncherConfig(type="mpiexec")


ProviderConfig = Annotated[
    LocalProviderConfig | SlurmProviderConfig | PBSProProviderConfig, Field(discriminator="type")
]


class HTEXConfig(Strict):
    """A Parsl HighThroughputExecutor: worker pools started by a provider, fed through an interchange."""

    label: Label
    type: Literal["htex"]
    provider: ProviderConfig
    max_workers_per_node: PositiveInt | None = Field(None, description="None = cores / cores_per_worker")
    cores_per_worker: PositiveFloat = 1.0
    mem_per_worker: PositiveFloat | None = Field(None, description="GB")
    available_accelerators: NonNegativeInt | list[str] = Field(0, description="GPUs to pin workers to")
    interface: str | None = Field(None, description="network interface workers reach; default: hostname")

    @model_validator(mode="after")
    def _interface_needs_scheduler(self) -> "HTEXConfig":
        if self.interface is not None and self.provider.type == "local":
            raise ValueError("'interface' applies to slurm/pbspro providers; local workers use 127.0.0.1")
        return self


class ThreadsConfig(Strict):
    """A Parsl ThreadPoolExecutor in the driving process: no start-up cost, for tests and light work."""

    label: Label
    type: Literal["threads"]
    max_threads: PositiveInt = 2


ExecutorConfig = Annotated[HTEXConfig | ThreadsConfig, Field(discriminator="type")]


class KindMap(Strict):
    """Task kind -> executor label; every kind must be placed somewhere."""

    dft: Label
    train: Label
    md: Label
    light: Label


class SiteConfig(Strict):
    """One site YAML: its executors, where each kind of task runs, and how the DFT launcher is called."""

    name: str
    executors: list[ExecutorConfig] = Field(min_length=1)
    kinds: KindMap
    strategy_period: PositiveFloat = Field(5.0, description="seconds between Parsl scaling decisions")
    retries: NonNegativeInt = Field(
        2, description="times Parsl resubmits a task whose worker was lost (node failure, ManagerLost)"
    )
    heartbeat_period: PositiveInt = Field(30, description="seconds between HTEX worker heartbeats")
    heartbeat_threshold: PositiveInt = Field(120, description="seconds of silence before a worker is lost")
    env: dict[str, Annotated[str, Field(coerce_numbers_to_str=True)]] = Field(
        default_factory=dict, description="extra environment for the DFT launcher, e.g. OMP_NUM_THREADS"
    )
    dft_command: str | None = Field(None, description="pw.x command line on this site, e.g. 'srun pw.x'")
    lammps_command: str | None = Field(
        None, description="LAMMPS for exploration.engine lammps, e.g. 'srun lmp' (its last word is the "
        "program); None = 'lmp'"
    )

    @field_validator("executors")
    @classmethod
    def _labels_unique(cls, executors: list[HTEXConfig | ThreadsConfig]) -> list[HTEXConfig | ThreadsConfig]:
        labels = [e.label for e in executors]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"executor labels must be unique; repeated: {', '.join(repeated)}")
        return executors

    @field_validator("kinds")
    @classmethod
    def _kinds_name_executors(cls, kinds: KindMap, info: ValidationInfo) -> KindMap:
        if "executors" not in info.data:  # already reported as invalid
            return kinds
        labels = [e.label for e in info.data["executors"]]
        for kind, label in kinds.model_dump().items():
            if label not in labels:
                raise ValueError(
                    f"kind '{kind}' is mapped to executor '{label}', which this site does not define; "
                    f"defined executors: {', '.join(labels)}"
                )
        return kinds

    @model_validator(mode="after")
    def _heartbeat_threshold_above_period(self) -> "SiteConfig":
        if self.heartbeat_threshold <= self.heartbeat_period:
            raise ValueError(
                f"heartbeat_threshold ({self.heartbeat_threshold} s) must exceed heartbeat_period "
                f"({self.heartbeat_period} s)"
            )
        return self

    def executor_for(self, kind: str) -> str:
        """The executor label tasks of `kind` (one of `TASK_KINDS`) are submitted to."""
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind '{kind}'; kinds are {', '.join(TASK_KINDS)}")
        return getattr(self.kinds, kind)
