"""Nonlinear ACE fits: the real `pacemaker` CLI on the rendered input.yaml, as a monitored subprocess.

The evaluator is TensorFlow's `tensorpot` when tensorpotential is installed (the `tensorpot` extra:
analytic gradients, about 0.6 s per BFGS iteration here) and pyace's own evaluator otherwise (finite
differences, about 20 s per iteration: only for tiny bases). A previous generation's potential becomes
the starting point (`pacemaker -p`) when its basis is the one this generation would build.
"""

import importlib.util
from pathlib import Path

from pyace import BBasisConfiguration

from .errors import TrainingFailure
from .pacemaker_input import basis_signature
from .tools import check_finite_loss, executable, run_tool

BASIS_CHANGED = "basis changed (cutoff, radial basis, embedding, elements or functions differ)"
TENSORPOT_INSTALL = (
    'pip install "tensorflow==2.20.*" "tf_keras==2.20.*" sympy matscipy tqdm "questionary>=2" '
    '&& pip install --no-deps "tensorpotential==0.6.2.1"'
)


def tensorpot_available() -> bool:
    """True when pacemaker can use the TensorFlow evaluator (tensorpotential and tensorflow importable)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorpotential", "tensorflow"))


def resolve_backend(setting: str) -> str:
    """`auto` -> tensorpot if installed, else pyace; an explicit tensorpot that is missing is an error."""
    if setting == "auto":
        return "tensorpot" if tensorpot_available() else "pyace"
    if setting == "tensorpot" and not tensorpot_available():
        raise TrainingFailure(
            "training.backend is 'tensorpot' but tensorpotential/tensorflow are not importable here. "
            f"Install the extra (see docs/training.md): {TENSORPOT_INSTALL}; or use backend: auto / pyace.",
            "missing_executable",
        )
    return setting


def warm_start(initial_potential: str | None, target: BBasisConfiguration) -> tuple[bool, str]:
    """Whether the previous potential can seed this fit, and why (recorded with the result)."""
    if initial_potential is None:
        return False, "no previous potential"
    path = Path(initial_potential)
    if not path.is_file():
        return False, f"previous potential {path} not found"
    try:
        previous = BBasisConfiguration(str(path))
    except RuntimeError as err:
        return False, f"previous potential {path} unreadable ({err})"
    if basis_signature(previous) != basis_signature(target):
        return False, BASIS_CHANGED
    return True, f"started from {path}"


def run_pacemaker(workdir: Path, potential: Path, initial_potential: str | None, timeout: float) -> None:
    """`pacemaker input.yaml -o potential.yaml [-p previous.yaml]` in workdir; log in pacemaker.log."""
    args = [executable("pacemaker"), "input.yaml", "-o", potential.name, "--no-predict"]
    if initial_potential is not None:
        args += ["-p", str(Path(initial_potential).resolve())]
    log = workdir / "pacemaker.log"
    run_tool(args, workdir, log, timeout)
    check_finite_loss(log)
    if not potential.is_file():
        raise TrainingFailure(f"pacemaker exited 0 but wrote no {potential}; see {log}.", "subprocess_failed")
