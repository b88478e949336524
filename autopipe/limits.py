"""Upper bounds on what one input or site may ask for, checked from the settings before anything is built.

A typo (`rattled: 1000000000`, `supercell: [1000, 1000, 1000]`, `steps: 1e12`) must end in a message, not
in a segfault, a MemoryError or a run that never ends. `estimate` computes the size of a run from its
settings alone (cheap: one prototype cell), `check_input` refuses what exceeds `LIMITS`, and
`validate` prints the estimate so a user sees the cost before starting.
"""

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from autopipe.apps.structures.generate import prototype_cell
from autopipe.errors import ConfigError

if TYPE_CHECKING:
    from autopipe.executors.schema import SiteConfig

#: The largest value each quantity may take, and the keys that set it (named in the refusal).
LIMITS: dict[str, tuple[int, str]] = {
    "atoms per structure": (1000, "structures.generator.supercell or the structure files"),
    "atoms per assessment cell": (1000, "assess.md.supercell, assess.vacancy_supercell, assess.phonon_supercell"),
    "starting structures": (10_000, "structures.generator.rattled/strained/scaled or the structure files"),
    "atoms in all starting structures": (200_000, "the number and size of the starting structures"),
    "MD walkers per generation": (
        1000, "exploration.temperatures x ensembles and pressures x exploration.walkers_per_temperature"
    ),
    "MD steps per walker": (10_000_000, "exploration.steps, assess.md.steps"),
    "candidate frames per generation": (100_000, "MD walkers x exploration.max_frames_per_walker"),
    "generations": (1000, "loop.max_generations"),
    "DFT labels": (100_000, "loop.dft_budget"),
    "labels selected per generation": (10_000, "selection.max_per_generation"),
}
#: Site settings that multiply processes or block counts: a slip (`cores_per_worker: 1e-9`) would ask
#: Parsl for billions of workers.
MIN_CORES_PER_WORKER = 0.1
MAX_WORKERS_PER_NODE = 1024
MAX_BLOCKS = 1000
MAX_THREADS = 256
MAX_FILE_BYTES = 100_000_000


@dataclass(frozen=True)
class Estimate:
    """The size of a run, read from its settings: what `validate` prints and `check_input` bounds."""

    amounts: dict[str, int]

    def rows(self) -> list[tuple[str, str, str]]:
        """(quantity, amount, limit) for a table."""
        return [(name, f"{amount:,}", f"{LIMITS[name][0]:,}") for name, amount in self.amounts.items()]


def estimate(config: Any, structures: list[dict[str, Any]] | None = None) -> Estimate:
    """How big the run `config` (a SystemConfig) can get. Without `structures` (not built yet) the
    starting structures are counted from the generator settings; with them, exactly. Counted with
    arithmetic, never by building lists or cells of the size being checked."""
    exploration, generator = config.exploration, config.structures.generator
    conditions = sum(1 if ensemble == "nvt" else len(exploration.pressures) for ensemble in exploration.ensembles)
    walkers = len(exploration.temperatures) * conditions * exploration.walkers_per_temperature
    unit = 0  # atoms of the crystal's conventional cell (what the assessment repeats)
    if generator is not None:
        unit = len(prototype_cell(generator.model_copy(update={"supercell": (1, 1, 1), "cubic": True})))
    if structures is None:
        n_structures, atoms = 0, 0
        if generator is not None:
            n_structures = int(generator.include_ideal) + generator.rattled + generator.strained + generator.scaled
            atoms = len(prototype_cell(generator.model_copy(update={"supercell": (1, 1, 1)}))) * prod(
                generator.supercell
            )
        n_atoms = n_structures * atoms
    else:
        n_structures, atoms = len(structures), max((len(s["numbers"]) for s in structures), default=0)
        n_atoms = sum(len(s["numbers"]) for s in structures)
        unit = unit or len(structures[0]["numbers"])
    assess = config.assess
    repeats = max(prod(assess.md.supercell), prod(assess.vacancy_supercell), prod(assess.phonon_supercell))
    return Estimate({
        "atoms per structure": atoms,
        "atoms per assessment cell": unit * repeats if assess.enabled else 0,
        "starting structures": n_structures,
        "atoms in all starting structures": n_atoms,
        "MD walkers per generation": walkers,
        "MD steps per walker": max(exploration.steps, assess.md.steps if assess.enabled else 0),
        "candidate frames per generation": walkers * exploration.max_frames_per_walker,
        "generations": config.loop.max_generations,
        "DFT labels": config.loop.dft_budget,
        "labels selected per generation": config.selection.max_per_generation,
    })


def check_input(config: Any, structures: list[dict[str, Any]] | None = None) -> Estimate:
    """The estimate of `config`, or ConfigError listing every quantity above its limit (and a budget
    smaller than the starting structures: INIT's labels count against `loop.dft_budget`).

    Called first without `structures`, so nothing too large is ever built, then with them.
    """
    found = estimate(config, structures)
    problems = [
        f"{name}: {amount:,} is more than the limit of {LIMITS[name][0]:,} (set by {LIMITS[name][1]})"
        for name, amount in found.amounts.items()
        if amount > LIMITS[name][0]
    ]
    if structures is None:
        problems += [
            f"structures.files[{i}]: {path} is {path.stat().st_size / 1e6:.0f} MB, more than the limit of "
            f"{MAX_FILE_BYTES / 1e6:.0f} MB for starting structures"
            for i, path in enumerate(config.structures.files)
            if path.is_file() and path.stat().st_size > MAX_FILE_BYTES
        ]
    starting = found.amounts["starting structures"]
    if not problems and starting > config.loop.dft_budget:
        problems.append(
            f"loop.dft_budget = {config.loop.dft_budget} is smaller than the {starting} starting structures, "
            "whose labels count against it: raise the budget or make fewer starting structures"
        )
    if problems:
        raise ConfigError("the run would be too large:\n" + "\n".join(f"  - {p}" for p in problems))
    return found
def check_site(site: "SiteConfig") -> None:
    """ConfigError if a site asks for absurd numbers of workers, blocks or threads."""
    problems = []
    for i, executor in enumerate(site.executors):
        where = f"executors[{i}]"
        if executor.type == "threads":
            if executor.max_threads > MAX_THREADS:
                problems.append(f"{where}.max_threads = {executor.max_threads}: at most {MAX_THREADS}")
            continue
        if executor.cores_per_worker < MIN_CORES_PER_WORKER:
            problems.append(
                f"{where}.cores_per_worker = {executor.cores_per_worker:g}: at least {MIN_CORES_PER_WORKER} "
                "(fewer cores per worker means more workers than a node can run)"
            )
        if (executor.max_workers_per_node or 0) > MAX_WORKERS_PER_NODE:
            problems.append(
                f"{where}.max_workers_per_node = {executor.max_workers_per_node}: at most {MAX_WORKERS_PER_NODE}"
            )
        if executor.provider.max_blocks > MAX_BLOCKS:
            problems.append(f"{where}.provider.max_blocks = {executor.provider.max_blocks}: at most {MAX_BLOCKS}")
    if problems:
        raise ConfigError(f"Invalid site {site.name}:\n" + "\n".join(f"  - {p}" for p in problems))
