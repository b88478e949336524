"""Checks made before a run starts (and by `validate`): every program the run will start is there, and
generation 0 keeps enough training data to fit.

Without them a typo in `dft.command` or a missing backend surfaced only after INIT, as a FAILED project;
now it is an exit-2 message naming the key. Programs are looked up where the driver runs: on a cluster
whose compute nodes load other modules, the first task still reports what it cannot find.
"""

from collections import Counter
from typing import Any

from ase.symbols import Symbols

from autopipe.apps.dft.preflight import resolve_command
from autopipe.apps.structures import initial_structures
from autopipe.apps.structures.sources import is_reference
from autopipe.apps.train.dataset import validation_mask
from autopipe.apps.train.nonlinear import resolve_backend
from autopipe.apps.train.tools import executable
from autopipe.config import SystemConfig
from autopipe.errors import ConfigError, DFTError, TrainingError
from autopipe.executors.schema import SiteConfig
from autopipe.limits import check_site
from autopipe.project_files import check_project_dir
from autopipe.workflow import init_task, structure_uuid


def check_before_run(
    config: SystemConfig, site: SiteConfig, *, imports: bool = False
) -> list[dict[str, Any]]:
    """Every check `run` and `validate` make beyond the input's own validation; returns the starting
    structures (built again here: `load_config` has already bounded their size). A run that `imports`
    another project's labels has more training data than its starting structures: no split check."""
    check_site(site)
    check_project_path(config, site)
    check_programs(config, site)
    structures = initial_structures(config.structures.model_dump(mode="json"), config.elements, config.loop.seed)
    if not imports:
        key, _ = init_task(config)
        check_training_split(config, structures, [structure_uuid(key, i) for i in range(len(structures))])
    return structures


def check_project_path(config: SystemConfig, site: SiteConfig) -> None:
    """ConfigError for a project directory the run's tools cannot use: a file; a control character (newline,
    tab) anywhere; a blank on a site with Parsl workers, whose launch line (Parsl's) does not quote paths."""
    check_project_dir(config.project_dir)
    root = str(config.project_dir)
    if not root.isprintable():
        raise ConfigError(
            f"the project directory {root!r} contains a control character (newline, tab, ...), which the "
            "input files of pw.x and Pacemaker cannot hold: choose another --workdir or project.name."
        )
    workers = [executor.label for executor in site.executors if executor.type == "htex"]
    if workers and any(character.isspace() for character in root):
        raise ConfigError(
            f"the project directory {root!r} contains a blank: on site {site.name} the Parsl workers "
            f"({', '.join(workers)}) are started by a shell line that does not quote paths, so the run would "
            "hang. Choose a --workdir without blanks (or run on --site threads, which starts no workers)."
        )


def check_programs(config: SystemConfig, site: SiteConfig | None) -> None:
    """ConfigError listing every program of the run that is not found: the DFT command with its launcher
    (the site's `dft_command` where set), the Pacemaker tools, and the nonlinear fit's backend."""
    problems = []
    if config.dft.engine == "qe":
        key = "the site's dft_command" if site is not None and site.dft_command else "dft.command"
        try:
            resolve_command(site.dft_command if key != "dft.command" else config.dft.command)
        except DFTError as err:
            problems.append(str(err) if key == "dft.command" else f"{key}: {err}")
    programs = ["pace_yaml2yace", "pace_activeset"] + (["pacemaker"] if config.training.mode == "nonlinear" else [])
    for program in programs:
        try:
            executable(program)
        except TrainingError as err:
            problems.append(str(err))
    if config.training.mode == "nonlinear":
        try:
            resolve_backend(config.training.backend)
        except TrainingError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("a program the run needs is missing:\n" + "\n".join(f"  - {p}" for p in problems))


def check_training_split(config: SystemConfig, structures: list[dict[str, Any]], uuids: list[str]) -> None:
    """ConfigError when generation 0's training part (after `training.test_fraction` is held out, decided
    per uuid exactly as the fit will) has fewer atoms of an element than basis functions per element:
    Pacemaker's active set (pace_activeset) cannot be built from fewer environments than functions."""
    training = config.training
    held_out = validation_mask(uuids, training.test_fraction, training.seed, starting=[True] * len(uuids),
                               always_train=[is_reference(s["info"].get("source", "")) for s in structures])
    counts: Counter[str] = Counter()
    for structure, out in zip(structures, held_out, strict=True):
        if not out:
            counts.update(str(symbol) for symbol in Symbols(structure["numbers"]))
    short = {el: counts[el] for el in config.elements if counts[el] < training.functions_per_element}
    if short:
        have = ", ".join(f"{n} {el}" for el, n in short.items())
        raise ConfigError(
            f"generation 0 leaves too little training data: training.test_fraction = {training.test_fraction:g} "
            f"holds out {int(held_out.sum())} of the {len(structures)} starting structures, leaving {have} "
            f"atom(s) for {training.functions_per_element} training.functions_per_element; the active set "
            "needs at least as many atoms of each element as functions. Add starting structures "
            "(structures.generator.rattled, a larger supercell), lower training.functions_per_element, "
            "or set training.test_fraction: 0."
        )
