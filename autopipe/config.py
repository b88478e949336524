"""The user's input.yaml (`MinimalConfig`) and the fully resolved configuration of a run (`SystemConfig`).

`load_config` is the one door: it reads the YAML safely, validates every section, resolves defaults and
paths (`expand`), and checks what the run will need from disk (pseudopotentials, structure files), so bad
input fails before anything is written, with one `ConfigError` paragraph naming each bad key.
"""

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any

from ase.data import chemical_symbols
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from autopipe.apps.assess.settings import AssessSettings
from autopipe.apps.dft.emt import EMT_ELEMENTS
from autopipe.apps.dft.pseudo import check_pseudopotentials
from autopipe.apps.dft.settings import OPERATIONAL_KEYS, DFTSettings
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.select.settings import SelectionSettings
from autopipe.apps.structures.generate import initial_structures
from autopipe.apps.structures.settings import StructuresSettings, formula_symbols
from autopipe.apps.train.settings import TrainingSettings
from autopipe.errors import ConfigError
from autopipe.events import canonical_json
from autopipe.limits import check_input
from autopipe.validation import Wording, load_model, read_yaml

INPUT_WORDING = Wording(reference="docs/input-reference.md")


def _project_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or set(name) == {"."}:
        raise ValueError("use letters, digits, '_', '.' and '-' only (it names the project directory)")
    return name


def _chemical_symbol(symbol: str) -> str:
    if symbol not in chemical_symbols[1:]:
        raise ValueError("not a chemical symbol (write it as in the periodic table: Al, Cu, O)")
    return symbol


ProjectName = Annotated[str, AfterValidator(_project_name)]
ChemicalSymbol = Annotated[str, AfterValidator(_chemical_symbol)]


class ProjectSettings(BaseModel):
    """Names the project; the project directory defaults to `<input file dir>/<name>`."""

    model_config = ConfigDict(extra="forbid")

    name: ProjectName


class LoopSettings(BaseModel):
    """Stopping limits of the active-learning loop."""

    model_config = ConfigDict(extra="forbid")

    max_generations: PositiveInt = Field(
        6, description="number of potentials trained (with 4 labels per generation, up to 20 selected)"
    )
    dft_budget: PositiveInt = Field(
        200, description="most successful DFT labels in the whole run, the starting structures' included"
    )
    seed: int = Field(0, ge=0, lt=2**32, description="seed of every random choice (structures, MD)")
    target_force_rmse: PositiveFloat | None = Field(
        None,
        description="meV/A; the loop stops once a potential's validation force RMSE is at or below it "
        "(None: no target)",
    )


class MinimalConfig(BaseModel):
    """input.yaml as the user writes it: `project`, `elements` and `structures` are required."""

    model_config = ConfigDict(extra="forbid")

    project: ProjectSettings
    elements: list[ChemicalSymbol] = Field(min_length=1)
    structures: StructuresSettings
    dft: DFTSettings = Field(default_factory=DFTSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    exploration: ExplorationSettings = Field(default_factory=ExplorationSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    assess: AssessSettings = Field(default_factory=AssessSettings)

    @field_validator("elements")
    @classmethod
    def _unique(cls, elements: list[str]) -> list[str]:
        repeated = sorted({e for e in elements if elements.count(e) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once; list each element once")
        return elements

    @model_validator(mode="after")
    def _elements_agree(self) -> "MinimalConfig":
        problems = []
        generator = self.structures.generator
        if generator is not None and generator.formula is not None:
            foreign = sorted(set(formula_symbols(generator.formula)) - set(self.elements))
            if foreign:
                problems.append(
                    f"structures.generator.formula {generator.formula!r} contains {', '.join(foreign)}, "
                    f"not in elements {self.elements}"
                )
        if generator is not None and generator.occupation is not None:
            foreign = sorted(set(generator.occupation) - set(self.elements))
            if foreign:
                problems.append(
                    f"structures.generator.occupation names {', '.join(foreign)}, not in elements {self.elements}"
                )
        unsupported = [e for e in self.elements if e not in EMT_ELEMENTS]
        if self.dft.engine == "emt" and unsupported:
            problems.append(
                f"dft.engine 'emt' has no parameters for {', '.join(unsupported)} (in elements); EMT knows "
                f"only {', '.join(EMT_ELEMENTS)}. Use engine 'qe' for other elements"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _target_needs_validation(self) -> "MinimalConfig":
        if self.loop.target_force_rmse is not None and self.training.test_fraction == 0:
            raise ValueError(
                f"loop.target_force_rmse is {self.loop.target_force_rmse:g} meV/A but training.test_fraction "
                "is 0, so there is no validation set to measure it on; set test_fraction > 0 (e.g. 0.1) or "
                "drop the target"
            )
        return self


class SystemConfig(MinimalConfig):
    """Every default resolved and every path absolute; written to system.json and stored in `run.started`."""

    project_dir: Path

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of what the run computes: not `project_dir` (a moved project still
        resumes) nor the operational DFT settings (a run may resume on another site or with longer limits)."""
        payload = self.model_dump(mode="json", exclude={"project_dir": True, "dft": set(OPERATIONAL_KEYS)})
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def _absolute(path: Path, base_dir: Path) -> Path:
    """`path` relative to `base_dir` (with `~` expanded), normalised but with symlinks kept."""
    return Path(os.path.normpath(base_dir.absolute() / path.expanduser()))


def expand(minimal: MinimalConfig, base_dir: Path, project_dir: Path | None = None) -> SystemConfig:
    """Resolve defaults and paths: files and pseudo_dir against `base_dir` (the input file's directory),
    the generator's formula, and the project directory (`project_dir`, else `<base_dir>/<project.name>`)."""
    generator = minimal.structures.generator
    structures = minimal.structures.model_copy(
        update={
            "files": [_absolute(p, base_dir) for p in minimal.structures.files],
            "generator": generator.with_formula(minimal.elements) if generator else None,
        }
    )
    dft = minimal.dft.model_copy(update={"pseudo_dir": _absolute(minimal.dft.pseudo_dir, base_dir)})
    resolved_project = (
        _absolute(project_dir, Path.cwd()) if project_dir else _absolute(Path(minimal.project.name), base_dir)
    )
    return SystemConfig.model_validate(
        {
            **minimal.model_dump(),
            "structures": structures.model_dump(),
            "dft": dft.model_dump(),
            "project_dir": resolved_project,
        }
    )


def load_config(path: Path, workdir: Path | None = None) -> SystemConfig:
    """Read, validate and expand input.yaml; every problem is one ConfigError naming the key and the value.

    Beyond the schema, checks what the run needs from disk: the pseudopotentials (engine `qe`) and that
    the starting structures can be read or built.
    """
    path = Path(path)
    minimal = load_model(path, MinimalConfig, INPUT_WORDING)
    try:
        config = expand(minimal, path.parent, workdir)
        if config.dft.engine == "qe":
            check_pseudopotentials(config.dft.pseudo_dir, config.dft.pseudopotentials, config.elements)
        check_input(config)  # before building: nothing too large is ever made
        structures = initial_structures(
            config.structures.model_dump(mode="json"), config.elements, config.loop.seed
        )
        check_input(config, structures)
    except ConfigError as err:
        raise ConfigError(f"Invalid input in {path}: {err}") from err
    return config


def written_keys(path: Path) -> dict[str, bool]:
    """Every dotted key path the input file at `path` writes, sections included, mapped to whether it holds a
    value (False: a section). On resume only keys the user wrote can refuse the run: the others differ by
    their defaults, which an upgrade may change (workflow.check_compatible)."""
    return _key_paths(read_yaml(path))


def _key_paths(document: Any, prefix: str = "") -> dict[str, bool]:
    paths: dict[str, bool] = {}
    for key, value in (document.items() if isinstance(document, dict) else ()):
        paths[f"{prefix}{key}"] = not isinstance(value, dict)
        paths.update(_key_paths(value, f"{prefix}{key}."))
    return paths
