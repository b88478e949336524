"""Pacemaker's input.yaml, rendered from the validated settings, and the ACE basis it defines.

Both modes go through the same rendered file: the nonlinear mode hands it to the `pacemaker` CLI, the
linear mode builds its basis from its `potential:` section, so the file in the task directory always
says exactly which basis was fitted.
"""

from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, Undefined
from pyace import BBasisConfiguration
from pyace.basisextension import construct_bbasisconfiguration

from .settings import TrainingSettings

MODE_NOTES = {
    "linear": "Linear mode: mlip-autopipe fitted this basis with pyace.linearacefit (ridge), not with pacemaker.",
    "nonlinear": "Nonlinear mode: this is the file the pacemaker CLI was run on.",
}


def _yaml_value(value: Any) -> str:
    """One value in YAML flow style that YAML 1.1 and 1.2 readers parse alike (1e-08 is written 1.0e-08)."""
    if isinstance(value, Undefined):
        str(value)  # a filter receives StrictUndefined unevaluated; str() raises UndefinedError naming it
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


_ENV = Environment(
    loader=PackageLoader("autopipe.apps.train", "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.filters["yaml"] = _yaml_value


def render_input(
    settings: TrainingSettings,
    elements: list[str],
    *,
    train_file: str,
    validation_file: str | None,
    backend: str,
) -> str:
    """The text of input.yaml; a variable the template needs but is not given raises at once."""
    values = settings.model_dump() | {
        "mode_note": MODE_NOTES[settings.mode],
        "elements": sorted(elements),
        "train_file": train_file,
        "validation_file": validation_file,
        "backend": backend,  # the resolved evaluator, never "auto"
        "display_step": min(50, settings.max_iterations),
    }
    return _ENV.get_template("input.yaml.j2").render(**values)


def basis_from_input(text: str) -> BBasisConfiguration:
    """The (zero-coefficient) B-basis configuration that the input's `potential:` section defines."""
    return construct_bbasisconfiguration(yaml.safe_load(text)["potential"])


def basis_signature(conf: BBasisConfiguration) -> list[tuple]:
    """What must match for coefficients to carry over: per block, cutoffs, radial basis, embedding, functions.

    The inner-core (ZBL) parameters are left out: Pacemaker resets them after every fit.
    """
    return sorted(
        (
            block.block_name,
            round(block.rcutij, 8),
            round(block.dcutij, 8),
            block.radbase,
            tuple(block.radparameters),
            block.npoti,
            block.ndensityi,
            tuple(block.fs_parameters),
            block.nradmaxi,
            block.lmaxi,
            block.nradbaseij,
            tuple(
                sorted((tuple(f.ns), tuple(f.ls), tuple(f.LS), tuple(f.elements)) for f in block.funcspecs)
            ),
        )
        for block in conf.funcspecs_blocks
    )
