"""`mlip-auto run INPUT --from-labels OTHER`: a new project starts with another project's finished labels.

Labels join a dataset only with the same physics: OTHER's DFT settings (all but the operational keys)
must equal this input's, so each imported label carries exactly the task key this run would compute for
its structure, and the DFT stage finds it done instead of computing it; and only of elements this input
fits (a subset of its `elements`), else every TRAIN would fail on them. Each label enters generation 0 as
a structure of config_type `imported` (source: OTHER and its uuid there), with its full provenance, and is
announced by the usual events: `structures.added`, then per label `task.submitted` (whose `inputs` name
the origin) and `task.completed`.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase.data import chemical_symbols

from autopipe.apps.dft.settings import OPERATIONAL_KEYS
from autopipe.apps.structures import atoms_to_dict
from autopipe.config import SystemConfig
from autopipe.database import DatabaseManager
from autopipe.errors import UsageError
from autopipe.events import EventStore, RunState, fold
from autopipe.project_files import STRUCTURES_FILE, check_intact, check_pair

if TYPE_CHECKING:
    from autopipe.workflow import WorkflowManager

IMPORTED = "imported"


@dataclass(frozen=True)
class Label:
    """One finished label of another project: its structure, result (with provenance) and task key."""

    structure: dict[str, Any]
    result: dict[str, Any]
    key: str
    origin: str  # "<project>:<uuid>"


def read_labels(other: Path, config: SystemConfig) -> list[Label]:
    """Every finished DFT label of the project `other`; UsageError if it is not a healthy project, or its
    labels hold elements `config` lacks or were computed with other DFT settings. Reads only: it runs before
    the new project is created, so a refusal leaves nothing behind."""
    other = other.absolute()
    if not (other / "events.sqlite").is_file():
        raise UsageError(f"--from-labels {other}: no project there (it holds no events.sqlite).")
    with EventStore.open_existing(other / "events.sqlite") as store:
        check_pair(other, check_intact(store))
        state = fold(store.events())
    labels = _labels_of(other, state)
    _check_elements(other, labels, config)
    _check_physics(other, state, config)
    return labels


def _labels_of(other: Path, state: RunState) -> list[Label]:
    db = DatabaseManager(other / STRUCTURES_FILE)
    labels = []
    for task in state.labels_done():
        result = db.label_of(task.label)
        if result is None:
            raise UsageError(
                f"--from-labels {other}: its log records label {task.key} but {STRUCTURES_FILE} lacks it."
            )
        structure = atoms_to_dict(db.get(task.label))
        labels.append(Label(structure, {k: v for k, v in result.items() if k != "task_key"}, task.key,
                            f"{other}:{task.label}"))
    return labels


def _check_elements(other: Path, labels: list[Label], config: SystemConfig) -> None:
    """A label with an element the potential does not fit would fail every TRAIN of the new project."""
    found = {chemical_symbols[number] for label in labels for number in label.structure["numbers"]}
    foreign = sorted(found - set(config.elements))
    if foreign:
        raise UsageError(
            f"--from-labels {other}: its labels hold {', '.join(foreign)}, which this input's elements "
            f"({', '.join(config.elements)}) lack; a potential is fitted only for its own elements, so every "
            "training would fail on them. Add the elements to `elements:` or import labels of a project "
            "with the same elements (or a subset)."
        )


def _check_physics(other: Path, state: RunState, config: SystemConfig) -> None:
    """Labels of other DFT settings would mix two kinds of physics in one training set."""
    theirs = _physics((state.config or {}).get("dft", {}))
    ours = _physics(config.dft.model_dump(mode="json"))
    if theirs != ours:
        changed = sorted(key for key in set(theirs) | set(ours) if theirs.get(key) != ours.get(key))
        raise UsageError(
            f"--from-labels {other}: its labels were computed with other DFT settings (dft."
            f"{', dft.'.join(changed)} differ), so they would mix two kinds of physics in one training set. "
            "Use the same dft settings as that project, or compute the labels anew."
        )


def import_labels(manager: "WorkflowManager", labels: list[Label]) -> None:
    """Store `labels` as generation 0 of the manager's new project and record each as a finished DFT task."""
    if not labels:
        return
    from autopipe.workflow import task_key  # the workflow imports this module when it runs

    structures = [{**label.structure, "info": {"source": label.origin}} for label in labels]
    key = task_key("import", [label.origin for label in labels])
    uuids = manager.add_structures(structures, key, generation=0, config_type=IMPORTED)
    for label, uuid in zip(labels, uuids, strict=True):
        ref = {"key": label.key, "kind": "dft", "generation": 0}
        manager.append("task.submitted", {**ref, "label": uuid, "inputs": {"imported_from": label.origin}})
        manager.db.add_label(uuid, {**label.result, "imported_from": label.origin}, task_key=label.key)
        summary = {"status": "ok", "energy": label.result["energy"], "imported_from": label.origin}
        manager.append("task.completed", {**ref, "result": summary, "wall_time": 0.0})


def _physics(dft: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in dft.items() if key not in OPERATIONAL_KEYS}
