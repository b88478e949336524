"""Finding and reading site YAML files; every problem becomes one `ConfigError` paragraph naming the key."""

from pathlib import Path

from autopipe.errors import ConfigError
from autopipe.validation import Wording, load_model

from .resources import site_problems
from .schema import SiteConfig

#: Where site names are looked up, first match wins: the repository's folder, then the copies in the package
#: (so an installed wheel still knows the built-in sites).
SITE_DIRS = (
    Path(__file__).resolve().parent.parent / "site-configs",
    Path(__file__).resolve().parent / "sites",
)

#: Site errors keep their own wording: the bad value after the problem, and the keys allowed "here".
SITE_WORDING = Wording(
    reference="docs/sites.md",
    value="{key}: {problem} (got {value})",
    unknown_key="unknown key (allowed here: {allowed})",
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
    """Validate one site YAML file: each key, then what the keys ask for together (`site_problems`)."""
    site = load_model(Path(path), SiteConfig, SITE_WORDING)
    problems = site_problems(site)
    if problems:
        raise ConfigError(
            f"Invalid input in {path}:\n"
            + "\n".join(f"  - {line}" for line in problems)
            + f"\nEvery key is described in {SITE_WORDING.reference}."
        )
    return site


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
