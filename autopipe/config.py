"""The user's input.yaml (`MinimalConfig`) and the fully resolved configuration of a run (`SystemConfig`).

`load_config` is the one door: it reads the YAML safely, validates every section, resolves defaults and
paths (`expand`), and checks what the run will need from disk (pseudopotentials, structure files), so bad
input fails before anything is written, with one `ConfigError` paragraph naming each bad key.
"""

import hashlib
import json
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from ase.calculators.emt import parameters as emt_parameters
from ase.data import chemical_symbols
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from autopipe.apps.dft.pseudo import check_pseudopotentials
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.select.settings import SelectionSettings
from autopipe.apps.structures.generate import initial_structures
from autopipe.apps.structures.settings import StructuresSettings, formula_symbols
from autopipe.apps.train.settings import TrainingSettings
from autopipe.errors import ConfigError

EMT_ELEMENTS = tuple(sorted(emt_parameters))
REFERENCE_DOC = "docs/input-reference.md"


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

    max_generations: PositiveInt = Field(3, description="number of potentials trained")
    dft_budget: PositiveInt = Field(200, description="most DFT labels in the whole run")
    seed: int = Field(0, description="seed of every random choice (structures, MD)")


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
        unsupported = [e for e in self.elements if e not in EMT_ELEMENTS]
        if self.dft.engine == "emt" and unsupported:
            problems.append(
                f"dft.engine 'emt' has no parameters for {', '.join(unsupported)} (in elements); EMT knows "
                f"only {', '.join(EMT_ELEMENTS)}. Use engine 'qe' for other elements"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SystemConfig(MinimalConfig):
    """Every default resolved and every path absolute; written to system.json and stored in `run.started`."""

    project_dir: Path

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of everything but `project_dir`, so a moved project still resumes."""
        payload = self.model_dump(mode="json", exclude={"project_dir"})
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


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
    try:
        minimal = MinimalConfig.model_validate(read_yaml(path))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path)) from err
    try:
        config = expand(minimal, path.parent, workdir)
        if config.dft.engine == "qe":
            check_pseudopotentials(config.dft.pseudo_dir, config.dft.pseudopotentials, config.elements)
        initial_structures(config.structures.model_dump(mode="json"), config.elements, config.loop.seed)
    except ConfigError as err:
        raise ConfigError(f"Invalid input in {path}: {err}") from err
    return config


class _InputLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML would silently keep the last) and
    reads only true/false as booleans, so `spin: off` stays the word 'off' (as in YAML 1.2)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice in one section", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


_InputLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file, read with a safe loader; ConfigError says what and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"The input file {path.absolute()} does not exist.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"The input file {path} cannot be read as UTF-8 text: {err}.") from err
    try:
        data = yaml.load(text, Loader=_InputLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML: {err.problem}{where}.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}.") from err
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (project:, elements:, structures:, ...), "
            f"not {type(data).__name__ if data is not None else 'an empty document'}."
        )
    return data


def format_validation_error(err: ValidationError, path: Path, root: type[BaseModel] = MinimalConfig) -> str:
    """All of pydantic's errors as one paragraph, one line per key, without pydantic's own boilerplate.

    A value that fails every member of a union (e.g. 'auto' or a mapping) gets one line listing each way.
    """
    by_key: dict[str, list[str]] = {}
    for error in err.errors(include_url=False):
        head, message = _describe(error, root)
        if not head or message.startswith(head.split(" = ")[0]):  # the message names its own key
            head, message = message, ""
        by_key.setdefault(head, []).append(message)
    lines = [
        f"{head}: {', or '.join(messages)}" if any(messages) else head for head, messages in by_key.items()
    ]
    return (
        f"Invalid input in {path}:\n"
        + "\n".join(f"  - {line}" for line in lines)
        + f"\nEvery key is described in {REFERENCE_DOC}."
    )


# Names pydantic puts into an error location for the members of a union ("literal['auto']", "str").
_UNION_TAG = re.compile(r".*\[.*\]|str|int|float|bool|none")


def _describe(error: dict[str, Any], root: type[BaseModel]) -> tuple[str, str]:
    """(key path with the bad value, what is wrong and what is allowed) for one pydantic error."""
    loc = [p for p in error["loc"] if not (isinstance(p, str) and (p == "[key]" or _UNION_TAG.fullmatch(p)))]
    key, value = _key_path(loc), error.get("input")
    shown = key if isinstance(value, dict) or error["type"] == "missing" else f"{key} = {_short(value)}"
    if error["type"] == "extra_forbidden":
        section = _section_model(root, loc[:-1])
        where = f"in {_key_path(loc[:-1])}" if loc[:-1] else "at the top level"
        return key, "unknown key" + (
            f"; allowed keys {where}: {', '.join(section.model_fields)}" if section else ""
        )
    if error["type"] == "missing":
        return key, "required key is missing"
    if error["type"] == "model_type":
        return shown, f"must be a section with keys {', '.join(_section_model(root, loc).model_fields)}"
    if error["type"] == "too_short":
        return shown, f"must have at least {error['ctx']['min_length']} item(s)"
    return shown, error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1)


def _key_path(loc: list[str | int]) -> str:
    """('exploration', 'temperatures', 1) -> 'exploration.temperatures[1]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _section_model(root: type[BaseModel], loc: list[str | int]) -> type[BaseModel] | None:
    """The pydantic model that validates the section at `loc` (None if `loc` is not a model section)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, (_model_in(arg) for arg in typing.get_args(annotation))), None)
