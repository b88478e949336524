"""Finding and reading site YAML files; every problem becomes one `ConfigError` paragraph naming the key."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from autopipe.errors import ConfigError

from .schema import TAGGED_MODELS, SiteConfig, models_in

#: Where site names are looked up, first match wins: the repository's folder, then the copies in the package
#: (so an installed wheel still knows the built-in sites).
SITE_DIRS = (
    Path(__file__).resolve().parent.parent / "site-configs",
    Path(__file__).resolve().parent / "sites",
)


def available_sites() -> list[str]:
    """Names `load_site` accepts, e.g. ``['local', 'perlmutter', 'polaris', 'threads']``."""
    return sorted({path.stem for folder in SITE_DIRS if folder.is_dir() for path in folder.glob("*.yaml")})


def load_site(name_or_path: str | Path) -> SiteConfig:
    """Read a site by name (``local``) or by path (``./mysite.yaml``); a path has a suffix or a slash.

    >>> load_site("threads").executor_for("dft")
    'threads'
    """
    return parse_site(_locate(str(name_or_path)))


def parse_site(path: Path) -> SiteConfig:
    """Validate one site YAML file."""
    try:
        with open(path) as stream:
            raw = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Site config '{path}' is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Site config '{path}' must be a mapping with the keys {', '.join(SiteConfig.model_fields)}; "
            f"got {type(raw).__name__}."
        )
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigError(f"Site config '{path}' is invalid: {problems}.") from None


def _locate(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not path.is_file():
            raise ConfigError(f"Site config file '{name_or_path}' does not exist.")
        return path
    for folder in SITE_DIRS:
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"Unknown site '{name_or_path}'. Available sites: {', '.join(available_sites())}; "
        "or give the path of a site YAML file."
    )


def _describe(error: dict[str, Any]) -> str:
    """One pydantic error as 'key: what is wrong (got value)'."""
    key, model = _key_path(error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields) if model else "none"
        return f"{key}: unknown key (allowed here: {allowed})"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = key + "." + ctx["discriminator"].strip("'")
        if kind == "union_tag_not_found":
            return f"{tag_key}: required key is missing"
        return f"{tag_key}: {ctx['tag']!r} is not one of {ctx['expected_tags']}"
    if kind == "value_error":
        message = str(ctx["error"])
        if isinstance(error["input"], dict):  # a check across several keys of one block
            return f"{key}: {message}" if key else message
        return f"{key}: {message} (got {error['input']!r})"
    return f"{key}: {error['msg']} (got {error['input']!r})"


def _key_path(loc: tuple[str | int, ...]) -> tuple[str, type[BaseModel] | None]:
    """Dotted key of an error location, skipping union tags; also the model that holds its last key."""
    parts: list[str] = []
    model: type[BaseModel] | None = SiteConfig
    holder = model
    tag_next = False
    for part in loc:
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
        elif tag_next:
            model, tag_next = TAGGED_MODELS[part], False
        else:
            parts.append(part)
            holder = model
            field = model.model_fields.get(part) if model else None
            candidates = models_in(field.annotation) if field else []
            model = candidates[0] if len(candidates) == 1 else None
            tag_next = len(candidates) > 1
    return ".".join(parts), holder
