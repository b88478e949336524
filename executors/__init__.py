"""Where work runs: a site YAML turned into a `parsl.Config` with one executor per task kind.

>>> from autopipe.executors import load_site, build_parsl_config
>>> site = load_site("local")
>>> site.executor_for("dft")
'local'
"""

from .jobs import cancel_leftover_jobs
from .loader import available_sites, load_site, parse_site
from .parsl_config import build_parsl_config
from .resources import resources_text
from .schema import TASK_KINDS, SiteConfig

__all__ = [
    "TASK_KINDS",
    "SiteConfig",
    "available_sites",
    "build_parsl_config",
    "cancel_leftover_jobs",
    "load_site",
    "parse_site",
    "resources_text",
]
