"""The DFT factory's entry points: `choose_parameters` (what a label would use) and `label` (make one).

A label is a JSON-able dict. Its `status` is "ok" (numbers are trustworthy), "failed" (every attempt's reason
recorded, no numbers) or "rejected" (refused before any calculation, with the reason). Only a setup that makes
every label impossible (pw.x or a pseudopotential missing) raises `DFTError`.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase import Atoms

from autopipe.errors import ConfigError, DFTError

from ..retry import Attempt, retry
from ..structures import atoms_from_dict
from .emt import emt_label, emt_parameters
from .parameters import choose_qe_parameters
from .preflight import rejection, resolve_command
from .pseudo import load_pseudopotentials
from .pwscf import remove_scratch, run_attempt
from .recovery import QE_HANDLERS
from .settings import DFTSettings

RESULT_FILE = "label.json"


def choose_parameters(structure: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Parameters `label` would start from for `structure` (with a `rules` entry explaining each choice).

    Raises ConfigError (naming dft.pseudo_dir or dft.pseudopotentials.<El>) when a pseudopotential is unusable,
    or when pw.x would get a structure without a cell.
    """
    config = DFTSettings.model_validate(settings)
    atoms = atoms_from_dict(structure)
    if config.engine == "emt":
        return emt_parameters(atoms)
    if atoms.cell.volume < 1e-6:
        raise ConfigError(
            f"dft.engine 'qe': the structure {atoms.get_chemical_formula()} has no cell volume; "
            "pw.x needs a periodic cell (put a molecule in a box: ase's atoms.center(vacuum=6))"
        )
    headers = load_pseudopotentials(config.pseudo_dir, config.pseudopotentials, atoms.get_chemical_symbols())
    return choose_qe_parameters(atoms, config, headers)


def _result(
    status: str,
    engine: str,
    parameters: dict[str, Any],
    *,
    numbers: dict[str, Any] | None = None,
    attempts: Sequence[Attempt] = (),
    failure: dict[str, str] | None = None,
    pseudopotentials: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    numbers = numbers or {}
    last = attempts[-1].details if attempts else {}
    return {
        "status": status,
        "engine": engine,
        "energy": numbers.get("energy"),
        "forces": numbers.get("forces"),
        "stress": numbers.get("stress"),
        "magnetization": numbers.get("magnetization"),
        "converged": status == "ok",
        "scf_steps": numbers.get("scf_steps", last.get("scf_steps")),
        "scf_accuracy": numbers.get("scf_accuracy", last.get("scf_accuracy")),
        "wall_time": sum(a.wall_time for a in attempts),
        "parameters": {k: v for k, v in parameters.items() if k != "rules"},
        "code_version": numbers.get("code_version")
        or next((a.details["code_version"] for a in attempts if a.details.get("code_version")), None),
        "pseudopotentials": pseudopotentials or {},
        "attempts": [a.as_dict() for a in attempts],
        "failure": failure,
    }


def _label_emt(atoms: Atoms, config: DFTSettings) -> dict[str, Any]:
    parameters = emt_parameters(atoms)
    if (refusal := rejection(atoms, config.min_distance_factor, needs_cell=False)) is not None:
        return _result("rejected", "emt", {}, failure=refusal)
    run = retry(handlers=[], max_attempts=1)(lambda params, *, attempt: emt_label(atoms))
    outcome = run(parameters)
    return _result("ok", "emt", parameters, numbers=outcome.result, attempts=outcome.attempts)


def _label_qe(atoms: Atoms, config: DFTSettings, workdir: Path) -> dict[str, Any]:
    try:
        headers = load_pseudopotentials(
            config.pseudo_dir, config.pseudopotentials, atoms.get_chemical_symbols()
        )
    except ConfigError as exc:
        raise DFTError(str(exc)) from exc
    argv = resolve_command(config.command)
    pseudos = {el: {"file": h.file, "md5": h.md5} for el, h in sorted(headers.items())}
    if (refusal := rejection(atoms, config.min_distance_factor, needs_cell=True)) is not None:
        return _result("rejected", "qe", {}, failure=refusal, pseudopotentials=pseudos)
    parameters = choose_qe_parameters(atoms, config, headers)
    run = retry(handlers=QE_HANDLERS, max_attempts=config.max_attempts)(run_attempt)
    try:
        outcome = run(parameters, atoms, argv, workdir)
    finally:
        remove_scratch(workdir)
    if outcome.ok:
        return _result(
            "ok",
            "qe",
            outcome.params,
            numbers=outcome.result,
            attempts=outcome.attempts,
            pseudopotentials=pseudos,
        )
    failure = {"kind": outcome.failure.kind, "message": outcome.failure.message}
    return _result(
        "failed", "qe", outcome.params, attempts=outcome.attempts, failure=failure, pseudopotentials=pseudos
    )


def label(structure: dict[str, Any], settings: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Label one structure (atoms_to_dict form) with the configured engine; also written to workdir/label.json.

    Each pw.x attempt runs in `workdir/attempt_N/` (pw.in, pw.out, pw.err). A failed or rejected label is
    returned, not raised.
    """
    config = DFTSettings.model_validate(settings)
    atoms = atoms_from_dict(structure)
    directory = Path(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    result = _label_emt(atoms, config) if config.engine == "emt" else _label_qe(atoms, config, directory)
    (directory / RESULT_FILE).write_text(json.dumps(result, indent=1))
    return result
