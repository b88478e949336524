"""The structure database: what goes in comes back out, replays change nothing, and training data exports."""

import sqlite3

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from autopipe.apps.structures import atoms_to_dict
from autopipe.database import DatabaseManager
from autopipe.errors import RunError


@pytest.fixture
def db(tmp_path):
    return DatabaseManager(tmp_path / "structures.db")


def emt_label(atoms, **extra):
    """A DFT-shaped result computed with EMT, so the numbers are real and checkable."""
    calc_atoms = atoms.copy()
    calc_atoms.calc = EMT()
    return {
        "status": "ok",
        "engine": "emt",
        "energy": calc_atoms.get_potential_energy(),
        "forces": calc_atoms.get_forces().tolist(),
        "stress": calc_atoms.get_stress().tolist(),
        "code_version": "3.29",
        "parameters": {"ecutwfc": 25.0, "kpts": [4, 4, 4]},
        "pseudopotentials": {"Al": {"file": "Al.pz-vbc.UPF", "md5": "0123abcd"}},
        "wall_time": 1.5,
        "attempts": [{"attempt": 1, "handler": None}],
        **extra,
    }


def rattled_al(seed=0, size=2):
    atoms = bulk("Al", cubic=True).repeat(size)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_structure_round_trip_keeps_positions_cell_arrays_and_provenance(db):
    atoms = rattled_al()
    mask = np.arange(len(atoms)) % 3 != 0
    atoms.set_array("force_mask", mask)
    key = db.add_structure(atoms, config_type="md", generation=2, parent="init-7", source="walker_01")

    back = db.get(key)
    assert np.allclose(back.positions, atoms.positions) and np.allclose(back.cell, atoms.cell)
    assert back.get_chemical_formula() == "Al32"
    assert back.arrays["force_mask"].tolist() == mask.tolist()
    assert back.info == {
        "uuid": key,
        "config_type": "md",
        "generation": 2,
        "parent": "init-7",
        "source": "walker_01",
    }
    assert back.calc is None
    assert db.label_of(key) is None


def test_structure_given_as_dict_and_its_uuid_from_info(db):
    atoms = bulk("Cu")
    atoms.info["uuid"] = "init-cu-0"
    assert db.add_structure(atoms_to_dict(atoms), config_type="init", generation=0) == "init-cu-0"
    assert db.get("init-cu-0").get_chemical_formula() == "Cu"


def test_adding_the_same_uuid_again_changes_nothing(db, tmp_path):
    key = db.add_structure(bulk("Al"), config_type="init", generation=0, uuid="init-0")
    assert db.add_structure(bulk("Cu"), config_type="md", generation=5, uuid="init-0") == key
    assert len(db.structures()) == 1
    assert db.get(key).get_chemical_formula() == "Al"
    assert db.get(key).info["config_type"] == "init"


def test_label_is_stored_as_calculator_results_with_provenance(db):
    atoms = rattled_al(size=1)
    key = db.add_structure(atoms, config_type="init", generation=0)
    result = emt_label(atoms)
    db.add_label(key, result, task_key="dft-abc123")

    labelled = db.get(key)
    assert labelled.get_potential_energy() == pytest.approx(result["energy"])
    assert np.allclose(labelled.get_forces(), result["forces"])
    assert np.allclose(labelled.get_stress(), result["stress"])
    row = db.structures(labelled=True)[0]
    assert row.toatoms().get_potential_energy() == pytest.approx(result["energy"])
    assert (row.engine, row.task_key) == ("emt", "dft-abc123")

    label = db.label_of(key)
    assert label["pseudopotentials"]["Al"]["md5"] == "0123abcd"
    assert label["parameters"] == {"ecutwfc": 25.0, "kpts": [4, 4, 4]}
    assert (label["code_version"], label["wall_time"], label["task_key"]) == ("3.29", 1.5, "dft-abc123")
    assert label["attempts"] == [{"attempt": 1, "handler": None}]
    assert np.allclose(label["forces"], result["forces"])


def test_same_task_key_twice_changes_nothing_and_a_second_label_is_refused(db):
    atoms = rattled_al(size=1)
    key = db.add_structure(atoms, config_type="init", generation=0)
    first = emt_label(atoms)
    db.add_label(key, first, task_key="dft-1")
    db.add_label(key, emt_label(atoms, energy=99.0), task_key="dft-1")
    assert db.get(key).get_potential_energy() == pytest.approx(first["energy"])
    assert db.has_label("dft-1") and not db.has_label("dft-2")
    assert db.count_labels() == 1
    with pytest.raises(RunError, match="already labelled by task dft-1"):
        db.add_label(key, emt_label(atoms), task_key="dft-2")


def test_failed_or_malformed_results_are_not_stored(db):
    atoms = rattled_al(size=1)
    key = db.add_structure(atoms, config_type="init", generation=0)
    with pytest.raises(RunError, match="status 'failed'"):
        db.add_label(key, emt_label(atoms, status="failed", energy=None), task_key="dft-1")
    with pytest.raises(RunError, match=r"forces have shape \(1, 3\), structure .* has 4 atoms"):
        db.add_label(key, emt_label(atoms, forces=[[0.0, 0.0, 0.0]]), task_key="dft-1")
    with pytest.raises(KeyError, match="no structure with uuid 'nope'"):
        db.add_label("nope", emt_label(atoms), task_key="dft-1")
    assert db.count_labels() == 0 and not db.has_label("dft-1")


def test_identifiers_that_ase_db_would_read_as_numbers_are_refused_clearly(db):
    with pytest.raises(ValueError, match="uuid '12345' reads as a number"):
        db.add_structure(bulk("Al"), config_type="init", generation=0, uuid="12345")
    key = db.add_structure(bulk("Al"), config_type="init", generation=0)
    with pytest.raises(ValueError, match="task_key '1e5' reads as a number"):
        db.add_label(key, emt_label(bulk("Al")), task_key="1e5")


def test_queries_by_generation_type_and_label_state(db):
    keys = {}
    for generation, config_type in [(0, "init"), (0, "init"), (1, "md"), (2, "md")]:
        atoms = rattled_al(seed=len(keys), size=1)
        keys[db.add_structure(atoms, config_type=config_type, generation=generation)] = atoms
    first = next(iter(keys))
    db.add_label(first, emt_label(keys[first]), task_key="dft-first")

    assert len(db.structures(config_type="init")) == 2
    assert [row.uuid for row in db.structures(generation=1)] == [list(keys)[2]]
    assert [row.generation for row in db.structures(config_type="md")] == [1, 2]
    assert [row.uuid for row in db.structures(labelled=True)] == [first]
    assert len(db.structures(labelled=False)) == 3
    assert db.composition() == [
        {"config_type": "init", "generation": 0, "structures": 2, "labelled": 1},
        {"config_type": "md", "generation": 1, "structures": 1, "labelled": 0},
        {"config_type": "md", "generation": 2, "structures": 1, "labelled": 0},
    ]


def test_metadata_round_trip_survives_reopening(db, tmp_path):
    config = {"elements": ["Al"], "dft": {"ecutwfc": 25.0}, "hash": "sha-0f"}
    db.set_metadata(config)
    assert DatabaseManager(tmp_path / "structures.db").metadata() == config


def test_writes_are_committed_before_returning(db, tmp_path):
    """Another connection (another process, or the same after a crash) sees every write at once."""
    key = db.add_structure(bulk("Al"), config_type="init", generation=0)
    db.add_label(key, emt_label(bulk("Al")), task_key="dft-x")
    with sqlite3.connect(tmp_path / "structures.db") as other:
        assert other.execute("SELECT COUNT(*) FROM systems WHERE energy IS NOT NULL").fetchone() == (1,)
    assert DatabaseManager(tmp_path / "structures.db").has_label("dft-x")


def test_extxyz_export_carries_energies_forces_and_force_mask(db, tmp_path):
    expected = {}
    for seed in range(3):
        atoms = rattled_al(seed=seed, size=1)
        if seed == 1:
            atoms.set_array("force_mask", np.array([True, False, True, True]))
        key = db.add_structure(atoms, config_type="md", generation=seed, source=f"walker_{seed}")
        if seed < 2:
            expected[key] = emt_label(atoms)
            db.add_label(key, expected[key], task_key=f"dft-{seed}")

    path = tmp_path / "train.extxyz"
    assert db.export_extxyz(path) == 2
    frames = ase.io.read(path, index=":", format="extxyz")
    assert [frame.info["uuid"] for frame in frames] == list(expected)
    for frame, (key, result) in zip(frames, expected.items()):
        assert frame.get_potential_energy() == pytest.approx(result["energy"])
        assert np.allclose(frame.get_forces(), result["forces"])
        assert np.allclose(frame.get_stress(), result["stress"])
        assert frame.info["config_type"] == "md"
    assert "force_mask" not in frames[0].arrays
    assert frames[1].arrays["force_mask"].tolist() == [True, False, True, True]
    assert frames[1].info["generation"] == 1

    db.add_structure(bulk("Cu"), config_type="init", generation=0)  # no source, no parent
    assert db.export_extxyz(path, labelled_only=False) == 4
    unlabelled = ase.io.read(path, index=":", format="extxyz")[2:]
    assert unlabelled[0].calc is None and unlabelled[0].info["source"] == "walker_2"
    assert unlabelled[1].pbc.all() and "source" not in unlabelled[1].info
    last = list(expected)[-1]
    assert db.export_extxyz(path, uuids=[last]) == 1
    assert ase.io.read(path, format="extxyz").info["uuid"] == last
    assert not list(tmp_path.glob("*.partial"))
