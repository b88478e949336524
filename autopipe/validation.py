"""Reading a user's YAML file into a pydantic model, with every problem as one `ConfigError` paragraph.

Both input.yaml and the site files go through `load_model`: a safe loader that refuses duplicate keys, then
pydantic, then one line per bad key naming its path as the user writes it (`executors[0].provider.walltime`,
never pydantic's union member names), the bad value and what is allowed. A leaf module: it imports only
yaml, pydantic, the standard library and `autopipe.errors`.
"""

import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autopipe.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Wording:
    """How one kind of file words its error lines; `reference` is the document describing every key.

    `value` shows a key with its bad value (fields key, value, problem); `unknown_key` is the problem of a
    key the section does not have (fields allowed and where, e.g. 'in dft' or 'at the top level').
    """

    reference: str
    value: str = "{key} = {value}: {problem}"
    unknown_key: str = "unknown key; allowed keys {where}: {allowed}"


def load_model(path: Path, model: type[Model], wording: Wording) -> Model:
    """`path` read with `read_yaml` and validated as `model`; any problem is one ConfigError paragraph."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping with the keys {', '.join(model.model_fields)}, "
            f"not {type(data).__name__ if data is not None else 'an empty document'}."
        )
    try:
        validated = model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path, model, wording)) from err
    if bad := non_finite(validated):
        raise ConfigError(
            f"Invalid input in {path}:\n"
            + "\n".join(f"  - {key}: must be a finite number, not NaN or infinity" for key in bad)
            + f"\nEvery key is described in {wording.reference}."
        )
    return validated


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML would silently keep the last) and
    reads only true/false as booleans, so `spin: off` stays the word 'off' (as in YAML 1.2)."""

    yaml_implicit_resolvers: ClassVar[dict[str, list]] = {
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


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


#: An input or site file is a page of settings: these bounds refuse a YAML "billion laughs" (aliases of
#: aliases, a few hundred bytes that expand to billions of values) and absurd files before they cost memory.
MAX_YAML_BYTES = 1_000_000
MAX_YAML_VALUES = 100_000


def read_yaml(path: Path) -> Any:
    """The document in a YAML file, read with `_UniqueKeyLoader`; ConfigError says what and where.

    The document is composed first and its size counted with every alias expanded; only a document
    within MAX_YAML_VALUES is turned into Python objects.
    """
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_YAML_BYTES:,} bytes: not an input or site file.")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"The input file {path.absolute()} does not exist.") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {err.start} cannot be decoded): is it a binary file? Give a "
            "YAML input or site file."
        ) from err
    except OSError as err:
        raise ConfigError(f"{path} cannot be read: {err.strerror or err}.") from err
    try:
        loader = _UniqueKeyLoader(text)  # a SafeLoader subclass: no arbitrary objects
    except yaml.reader.ReaderError as err:  # the reader refuses control characters before any parsing
        raise ConfigError(
            f"{path} holds character #x{err.character:04x} at position {err.position}, which YAML does not "
            "allow: is it a binary file? Give a YAML input or site file."
        ) from err
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: with its aliases (*name) expanded the document holds more than {MAX_YAML_VALUES:,} "
                "values; write the settings out instead of nesting aliases."
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML: {err.problem}{where}.") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}.") from err
    except ValueError as err:
        raise ConfigError(f"{path}: {err}.") from err
    except RecursionError as err:
        raise ConfigError(f"{path} is nested too deeply to be an input or site file.") from err
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` becomes once every alias is copied out (memoised per node, so a bomb is
    counted in linear time); ValueError for an alias inside the node it names."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise ValueError("an alias (*name) refers to a section that contains it: the document never ends")
    open_nodes.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def non_finite(value: Any, key: str = "") -> list[str]:
    """Key paths (as the user writes them) of every NaN or infinite number inside `value`."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [key]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite(v, f"{key}[{i}]")]
    if isinstance(value, BaseModel):
        return non_finite(dict(value), key)
    return []


def format_validation_error(
    err: ValidationError, path: Path, model: type[BaseModel], wording: Wording
) -> str:
    """All of pydantic's errors as one paragraph, one line per key, without pydantic's own boilerplate.

    A value that fails every member of a union (e.g. 'auto' or a mapping) gets one line listing each way.
    """
    problems: dict[tuple[str, str | None], list[str]] = {}
    for error in err.errors(include_url=False):
        key, value, problem = _describe(error, model, wording)
        if problem.startswith(key):  # the message names its own key (or there is no key)
            key, value, problem = problem, None, ""
        problems.setdefault((key, value), []).append(problem)
    lines = []
    for (key, value), messages in problems.items():
        problem = ", or ".join(filter(None, messages))
        if value is not None:
            lines.append(wording.value.format(key=key, value=value, problem=problem))
        else:
            lines.append(f"{key}: {problem}" if problem else key)
    return (
        f"Invalid input in {path}:\n"
        + "\n".join(f"  - {line}" for line in lines)
        + f"\nEvery key is described in {wording.reference}."
    )


def _describe(error: dict[str, Any], model: type[BaseModel], wording: Wording) -> tuple[str, str | None, str]:
    """(key path, the bad value to show or None, what is wrong and what is allowed) for one pydantic error."""
    loc = [part for part in error["loc"] if part != "[key]"]  # '[key]' marks a bad key of a mapping
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    key, found = _walk(model, loc)
    shown = None if isinstance(value, dict) else _short(value)
    if kind == "extra_forbidden":
        section, holder = _walk(model, loc[:-1])
        if not _is_model(holder):
            return key, None, "unknown key"
        where = f"in {section}" if section else "at the top level"
        return key, None, wording.unknown_key.format(allowed=", ".join(holder.model_fields), where=where)
    if kind == "missing":
        return key, None, "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):  # the tag is a key of its own, e.g. `type`
        tag_key = ".".join(filter(None, (key, ctx["discriminator"].strip("'"))))
        if kind == "union_tag_not_found":
            return tag_key, None, "required key is missing"
        return tag_key, None, f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
    if kind == "model_type" and _is_model(found):
        return key, shown, f"must be a section with keys {', '.join(found.model_fields)}"
    if kind == "too_short":
        return key, shown, f"must have at least {ctx['min_length']} item(s)"
    return key, shown, error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1)


def _walk(model: type[BaseModel], loc: list[str | int]) -> tuple[str, Any]:
    """The key path of a pydantic error location as the user writes it ('exploration.temperatures[1]'),
    and the annotation found there (None where it cannot be told).

    Pydantic puts the member of a union it tried into the location (a discriminated union's tag such as
    'slurm', else a name such as "literal['auto']"); those are skipped, following the member they name.
    """
    text, annotation = "", model
    for part in loc:
        members = _members(_bare(annotation))
        if members:
            annotation = next((m for m in members if _is_tagged(m, part)), None)
        elif isinstance(part, int):
            text += f"[{part}]"
            args = typing.get_args(_bare(annotation))
            annotation = args[0] if args else None
        else:
            text += f".{part}" if text else part
            annotation = _item(annotation, part)
    return text, _bare(annotation)


def _bare(annotation: Any) -> Any:
    """`annotation` without Annotated[...] metadata and without an optional `| None`."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif len(members := _members(annotation)) == 1:
            annotation = members[0]
        else:
            return annotation


def _members(annotation: Any) -> list[Any]:
    """The members of a union other than None ([] if `annotation` is no union)."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    return [arg for arg in typing.get_args(annotation) if arg is not type(None)]


def _item(annotation: Any, key: str) -> Any:
    """The annotation of `key` inside a model (its field) or a mapping (its values)."""
    annotation = _bare(annotation)
    if _is_model(annotation):
        field = annotation.model_fields.get(key)
        return field.annotation if field else None
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    return None


def _is_tagged(member: Any, tag: str | int) -> bool:
    """Whether pydantic's name `tag` for a union member means the model `member`: its class name, or the
    value of one of its Literal fields (the discriminator, e.g. `type: Literal['slurm']`)."""
    member = _bare(member)
    if not _is_model(member):
        return False
    literals = (
        typing.get_args(field.annotation)
        for field in member.model_fields.values()
        if typing.get_origin(field.annotation) is Literal
    )
    return tag == member.__name__ or any(tag in values for values in literals)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
