"""Every structure the run made, its DFT label and where both came from, in one ase.db SQLite file.

Users open ``structures.db`` with the tools they know (``ase db structures.db config_type=init``,
``ase gui``); the training stage reads the extxyz file `DatabaseManager.export_extxyz` writes.

Rows are keyed by a ``uuid`` key-value pair. Writes are idempotent (a second `add_structure` with the same
uuid, or `add_label` with the same task key, changes nothing) so a resumed run can replay them, and each
write is committed before the call returns (one SQLite transaction, synchronous=FULL by default): the
workflow writes data here first, then the event that points to it.
"""

import functools
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import ase.db
import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db.row import AtomsRow

from autopipe.apps.structures import atoms_from_dict
from autopipe.errors import RunError
from autopipe.faults import writing
from autopipe.output_paths import replace_atomically

#: Per-atom arrays ase.db keeps in its own columns; any other array (e.g. ``force_mask``) goes to ``data``.
NATIVE_ARRAYS = {"numbers", "positions", "initial_magmoms", "initial_charges", "masses", "tags", "momenta"}
#: Key-value pairs copied into ``atoms.info`` by `get` and `export_extxyz`; ``energy_weight`` (0 for an
#: embedded cell, whose energy must not train) only where the structure had one.
INFO_KEYS = ("uuid", "config_type", "generation", "parent", "source", "energy_weight")
#: Label entries that become calculator results; the rest of a label is provenance.
RESULT_KEYS = ("energy", "forces", "stress")

P = ParamSpec("P")
R = TypeVar("R")


Method = Callable[Concatenate["DatabaseManager", P], R]


def _writes(method: Method[P, R]) -> Method[P, R]:
    """A full disk or a read-only directory met by this write names the database file (faults.writing)."""

    @functools.wraps(method)
    def wrapper(self: "DatabaseManager", *args: P.args, **kwargs: P.kwargs) -> R:
        with writing(self.path):
            return method(self, *args, **kwargs)

    return wrapper


class DatabaseManager:
    """Structures, DFT labels and run metadata of one project.

    >>> db = DatabaseManager(project / "structures.db")  # doctest: +SKIP
    >>> key = db.add_structure(bulk("Al"), config_type="init", generation=0)  # doctest: +SKIP
    >>> db.add_label(key, {"energy": -3.1, "forces": [[0, 0, 0]]}, task_key="dft-1a2b")  # doctest: +SKIP
    >>> db.export_extxyz(project / "train.extxyz")  # doctest: +SKIP
    1
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = ase.db.connect(str(self.path), type="db")

    # -- structures ----------------------------------------------------------------------------------------

    @_writes
    def add_structure(
        self,
        atoms_or_dict: Atoms | dict[str, Any],
        *,
        config_type: str,
        generation: int,
        parent: str | None = None,
        source: str = "",
        uuid: str | None = None,
    ) -> str:
        """Store a structure (no label yet) and return its uuid; an existing uuid is returned untouched.

        Of ``atoms.info`` only ``uuid`` and ``energy_weight`` are kept; extra per-atom arrays (``force_mask``)
        go to the row's data.

        The uuid is `uuid`, else ``atoms.info["uuid"]``, else a new random one. Give a deterministic one
        when the call may be replayed on resume.
        """
        atoms = atoms_from_dict(atoms_or_dict) if isinstance(atoms_or_dict, dict) else atoms_or_dict
        key = uuid or atoms.info.get("uuid") or str(uuidlib.uuid4())
        if self._db.count(uuid=key):
            return key
        if not config_type:
            raise ValueError("config_type must be a non-empty name, e.g. 'init' or 'md'")
        named = {"uuid": key, "config_type": config_type, "source": source, "parent": parent}
        # An empty source/parent is left out: extxyz would write 'source=' and misread the rest of the line.
        pairs = _text_checked(**{name: value for name, value in named.items() if value})
        if "energy_weight" in atoms.info:
            pairs["energy_weight"] = float(atoms.info["energy_weight"])
        extra = {name: values for name, values in atoms.arrays.items() if name not in NATIVE_ARRAYS}
        bare = atoms.copy()
        bare.calc = None
        bare.info = {}
        self._db.write(
            bare,
            key_value_pairs={**pairs, "generation": int(generation), "labelled": False},
            data={"arrays": extra} if extra else {},
        )
        return key

    def get(self, uuid: str) -> Atoms:
        """The structure with its extra arrays, ``info`` from its key-value pairs and, if labelled, its label
        as a SinglePointCalculator (energy, forces, stress)."""
        return _atoms(self._row(uuid))

    def structures(
        self, config_type: str | None = None, generation: int | None = None, labelled: bool | None = None
    ) -> list[AtomsRow]:
        """Rows in insertion order, filtered by whichever of the arguments are given."""
        query = {"config_type": config_type, "generation": generation, "labelled": labelled}
        return list(self._db.select(sort="id", **{k: v for k, v in query.items() if v is not None}))

    # -- labels --------------------------------------------------------------------------------------------

    @_writes
    def add_label(self, uuid: str, result: dict[str, Any], *, task_key: str) -> None:
        """Attach a successful DFT result to a structure; a task key already stored changes nothing.

        `result` holds ``energy`` (eV), ``forces`` (eV/A, natoms x 3) and optionally ``stress`` (eV/A^3, Voigt
        or 3x3); every other entry (engine, code_version, parameters, pseudopotentials with md5, wall_time,
        attempts, ...) is kept as provenance in the row's ``data["label"]``. A result whose ``status`` is
        not ``ok`` is refused: failed labels belong in the event log, not in the training data.
        """
        if self.has_label(task_key):
            return
        row = self._row(uuid)
        if row.get("labelled"):
            raise RunError(
                f"Structure {uuid} is already labelled by task {row.task_key}; refusing a second label from "
                f"task {task_key} (a DFT label is never computed twice)."
            )
        if result.get("status", "ok") != "ok" or result.get("energy") is None or result.get("forces") is None:
            raise RunError(
                f"Task {task_key} returned no usable label for structure {uuid} (status "
                f"{result.get('status')!r}); only results with status 'ok', energy and forces are stored."
            )
        atoms = row.toatoms()
        forces = np.asarray(result["forces"], dtype=float)
        if forces.shape != (len(atoms), 3):
            raise RunError(
                f"Task {task_key}: forces have shape {forces.shape}, structure {uuid} has {len(atoms)} atoms."
            )
        numbers = {"energy": float(result["energy"]), "forces": forces}
        if result.get("stress") is not None:
            numbers["stress"] = np.asarray(result["stress"], dtype=float)
        atoms.calc = SinglePointCalculator(atoms, **numbers)
        provenance = {k: v for k, v in result.items() if k not in RESULT_KEYS}
        pairs = _text_checked(
            task_key=task_key, **({"engine": result["engine"]} if result.get("engine") else {})
        )
        self._db.update(row.id, atoms=atoms, data={"label": provenance}, labelled=True, **pairs)

    def label_of(self, uuid: str) -> dict[str, Any] | None:
        """Energy, forces, stress and provenance of a structure's label, or None while it has none."""
        row = self._row(uuid)
        if not row.get("labelled"):
            return None
        numbers = {key: row.get(key) for key in RESULT_KEYS if row.get(key) is not None}
        return {**row.data["label"], **numbers, "task_key": row.task_key}

    def has_label(self, task_key: str) -> bool:
        """Whether the DFT task with this key already stored its label (resume: never compute it again)."""
        return self._db.count(task_key=task_key) > 0

    def count_labels(self) -> int:
        """Number of labelled structures."""
        return self._db.count(labelled=True)

    # -- metadata, export, summaries -----------------------------------------------------------------------

    @_writes
    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the database metadata (the run's expanded config lives here); must be JSON-able."""
        self._db.metadata = metadata

    def metadata(self) -> dict[str, Any]:
        """The metadata last stored with `set_metadata` ({} if none)."""
        return self._db.metadata

    def export_extxyz(
        self,
        path: str | Path,
        labelled_only: bool = True,
        uuids: list[str] | None = None,
        written_by: str | None = None,
    ) -> int:
        """Write structures as extended XYZ (energy/forces/stress as calculator results; info uuid,
        config_type, generation, energy_weight; per-atom arrays such as ``force_mask``) and return how many
        were written.

        `uuids` picks structures in that order; `labelled_only` drops those without a label; `written_by`
        goes into the first frame's info, so that the writer can recognise the file later. The file is
        replaced atomically, so a reader never sees half of it.
        """
        rows = [self._row(key) for key in uuids] if uuids is not None else self.structures()
        frames = [_atoms(row) for row in rows if row.get("labelled") or not labelled_only]
        if frames and written_by:
            frames[0].info["written_by"] = written_by
        with writing(path), replace_atomically(Path(path)) as handle:
            ase.io.write(handle, frames, format="extxyz")
        return len(frames)

    def composition(self) -> list[dict[str, Any]]:
        """Counts per (config_type, generation), as tidy rows for tables and charts.

        >>> db.composition()  # doctest: +SKIP
        [{'config_type': 'init', 'generation': 0, 'structures': 8, 'labelled': 8}, ...]
        """
        totals: Counter[tuple[str, int]] = Counter()
        labelled: Counter[tuple[str, int]] = Counter()
        for row in self._db.select(include_data=False):
            group = (row.config_type, row.generation)
            totals[group] += 1
            labelled[group] += bool(row.labelled)
        return [
            {"config_type": kind, "generation": gen, "structures": n, "labelled": labelled[(kind, gen)]}
            for (kind, gen), n in sorted(totals.items(), key=lambda item: (item[0][1], item[0][0]))
        ]

    def _row(self, uuid: str) -> AtomsRow:
        try:
            return self._db.get(uuid=uuid)
        except KeyError:
            raise KeyError(f"no structure with uuid {uuid!r} in {self.path}") from None


def _atoms(row: AtomsRow) -> Atoms:
    atoms = row.toatoms()
    for name, values in row.data.get("arrays", {}).items():
        atoms.set_array(name, np.asarray(values))
    atoms.info.update({key: row.get(key) for key in INFO_KEYS if row.get(key) is not None})
    return atoms


def _text_checked(**pairs: str) -> dict[str, str]:
    """Refuse text that ase.db would read back as a number or bool (it raises on such strings)."""
    for key, value in pairs.items():
        numeric = value in ("True", "False")
        for parse in (int, float):
            try:
                parse(value)
                numeric = True
            except ValueError:
                pass
        if numeric:
            raise ValueError(
                f"{key} {value!r} reads as a number, which ase.db cannot store as text; "
                f"use a value with a letter or a hyphen, e.g. '{key}-{value}'."
            )
    return pairs
