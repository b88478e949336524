"""Embedding an uncertain atom's neighbourhood in a small periodic cell: geometry, weights, and the way to DFT.

The cut cell must keep the core exactly as the MD frame had it, be periodic without atoms clashing across
its new boundary, and carry `energy_weight` 0 and a `force_mask` on the core through structures.db, the
export and the trainer's dataset; one such cell goes through the real pw.x.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.data import covalent_radii
from ase.geometry import get_distances
from ase.neighborlist import neighbor_list
from test_database import emt_label

from autopipe.apps.dft import label
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.explore.candidates import candidate_frame, write_candidates
from autopipe.apps.select import embed, select_candidates
from autopipe.apps.structures import atoms_to_dict
from autopipe.apps.train.dataset import read_dataset
from autopipe.database import DatabaseManager
from autopipe.errors import SelectionError
from autopipe.events import EventStore

CORE, BUFFER, MIN_DISTANCE = 3.0, 2.0, 0.75


def md_frame(repeat: int = 5, rattle: float = 0.15, seed: int = 0) -> Atoms:
    """A large, thermally disordered fcc Al cell (4 x repeat^3 atoms), as an MD walker would have it."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(rattle, seed=seed)
    atoms.set_array("gamma", np.linspace(1.0, 2.0, len(atoms)))
    return atoms


@pytest.fixture(scope="module")
def cut() -> tuple[Atoms, Atoms, int]:
    frame = md_frame()
    centre = 137
    return frame, embed(frame, centre, CORE, BUFFER, MIN_DISTANCE), centre


def test_the_core_keeps_its_geometry_exactly(cut):
    frame, cube, centre = cut
    vectors, lengths = get_distances(frame.positions[centre], frame.positions, cell=frame.cell, pbc=True)
    in_core = np.flatnonzero(lengths[0] <= CORE)
    assert cube.arrays["force_mask"].sum() == len(in_core) == cube.info["n_core"]
    core = cube.positions[cube.arrays["force_mask"]]
    # the centre first, every core atom at exactly its minimum-image displacement from it in the MD frame
    expected = vectors[0][in_core[np.argsort(lengths[0][in_core], kind="stable")]]
    assert np.allclose(core - core[0], expected, atol=1e-10)
    assert cube.info["embedded_centre"] == centre
    # per-atom arrays ride along: the core's grades are those of the frame's core atoms
    assert np.allclose(
        np.sort(cube.arrays["gamma"][cube.arrays["force_mask"]]), np.sort(frame.arrays["gamma"][in_core])
    )


def test_the_cell_is_a_periodic_cube_sized_by_core_and_buffer(cut):
    frame, cube, _ = cut
    side = 2 * (CORE + BUFFER)
    assert cube.pbc.all() and np.allclose(cube.cell, np.eye(3) * side)
    assert np.all((cube.get_scaled_positions(wrap=False) >= 0) & (cube.get_scaled_positions(wrap=False) < 1))
    core = cube.positions[cube.arrays["force_mask"]]
    assert np.all((core >= BUFFER - 1e-9) & (core <= side - BUFFER + 1e-9))  # core atoms >= buffer from faces
    density = len(cube) / cube.get_volume()
    assert density == pytest.approx(len(frame) / frame.get_volume(), rel=0.1)


def test_no_two_atoms_closer_than_the_minimum_distance_across_the_new_boundary(cut):
    frame, cube, _ = cut
    i, j, d, shift = neighbor_list("ijdS", cube, 4.0)
    across = np.any(shift != 0, axis=1)
    limit = MIN_DISTANCE * (covalent_radii[cube.numbers[i]] + covalent_radii[cube.numbers[j]])
    assert np.all(d[across] >= limit[across])
    assert cube.info["n_dropped"] > 0  # 10 A is not a multiple of 4.05 A: the faces do clash
    assert d.min() >= min(neighbor_list("d", frame, 4.0).min(), limit.min())


def test_weights_say_train_core_forces_only(cut):
    _, cube, _ = cut
    assert cube.info["energy_weight"] == 0.0
    assert cube.arrays["force_mask"].dtype == bool
    radius = np.linalg.norm(cube.positions - cube.positions[0], axis=1)
    assert np.array_equal(cube.arrays["force_mask"], radius <= CORE + 1e-9)
    assert (~cube.arrays["force_mask"]).sum() > cube.arrays["force_mask"].sum()  # a thick buffer


def test_embedding_is_deterministic_and_refuses_a_frame_smaller_than_the_cube(cut):
    frame, cube, centre = cut
    again = embed(frame, centre, CORE, BUFFER, MIN_DISTANCE)
    assert np.array_equal(again.positions, cube.positions) and again.info == cube.info
    assert embed(md_frame(repeat=2), 3, CORE, BUFFER, MIN_DISTANCE) is None  # 8.1 A cell, 10 A cube
    slab = frame.copy()
    slab.pbc = [True, True, False]
    assert embed(slab, centre, CORE, BUFFER, MIN_DISTANCE) is None  # not periodic: labelled whole
    with pytest.raises(SelectionError, match="buffer is too thin"):  # second-shell core atoms 0.7 A apart
        embed(md_frame(rattle=0.01), 0, 4.1, 0.3, MIN_DISTANCE)


def test_selection_embeds_large_frames_and_sends_small_ones_whole(potential, tmp_path):
    big = md_frame(repeat=5)
    small = bulk("Al", "fcc", a=4.05, cubic=True) * (2, 2, 2)
    small.rattle(0.2, seed=1)
    frames = [
        candidate_frame(big, big.arrays["gamma"] * 5, 10, 900.0, 3),
        candidate_frame(small, np.full(len(small), 7.0), 200, 900.0, 3),
    ]
    write_candidates(frames, tmp_path / "candidates.extxyz")
    settings = {"method": "max_gamma", "embed_core_radius": CORE, "embed_buffer": BUFFER}
    result = select_candidates(
        [str(tmp_path / "candidates.extxyz")],
        settings,
        5.0,
        8,
        str(tmp_path / "select"),
        potential=potential[0],
        active_set=potential[1],
    )

    cut_cell, whole = result["selected"]
    assert (
        cut_cell["info"]["embedded"] and cut_cell["info"]["embedded_centre"] == len(big) - 1
    )  # highest gamma
    assert cut_cell["info"]["energy_weight"] == 0.0 and len(cut_cell["numbers"]) < len(big)
    assert not whole["info"]["embedded"] and "energy_weight" not in whole["info"]
    assert "force_mask" not in whole["arrays"] and len(whole["numbers"]) == len(small)
    assert [p["embedded"] for p in result["picks"]] == [True, False]


def through_database(cube: Atoms, result: dict, tmp_path) -> None:
    """Store, label, export, and read as the trainer does: the weights must survive every step."""
    db = DatabaseManager(tmp_path / "structures.db")
    key = db.add_structure(atoms_to_dict(cube), config_type="embedded", generation=1)
    stored = db.get(key)
    assert stored.info["energy_weight"] == 0.0
    assert np.array_equal(stored.arrays["force_mask"], cube.arrays["force_mask"])
    db.add_label(key, result, task_key="dft-embedded")
    assert db.export_extxyz(tmp_path / "train.extxyz") == 1
    row = read_dataset(tmp_path / "train.extxyz").iloc[0]
    assert row["w_energy"] == 0.0 and row["config_type"] == "embedded"
    assert np.array_equal(row["w_forces"], cube.arrays["force_mask"].astype(float))
    assert np.allclose(row["forces"], result["forces"])


def test_masks_travel_through_the_database_the_export_and_the_trainer(cut, tmp_path):
    _, cube, _ = cut
    through_database(cube, emt_label(cube), tmp_path)


@pytest.mark.qe
def test_an_embedded_cell_is_labelled_by_real_pw_x(tmp_path):
    """A small cut (core: the first neighbour shell; 1.6 A buffer: a 9.1 A cube) at 12 Ry, Gamma only: 13 s."""
    frame = md_frame(repeat=4, rattle=0.03, seed=2)
    cube = embed(frame, 50, 2.95, 1.6, MIN_DISTANCE)
    assert cube.arrays["force_mask"].sum() == 13  # the centre and its 12 neighbours
    assert len(cube) == 32 and cube.info["n_dropped"] == 31  # the 4.05 A planes meet their images 1 A apart
    settings = DFTSettings(pseudopotentials={"Al": "Al.pz-vbc.UPF"}, ecutwfc=12, kspacing=1.0)
    result = label(atoms_to_dict(cube), settings.model_dump(mode="json"), str(tmp_path / "pw"))

    assert result["status"] == "ok" and result["parameters"]["kpts"] == [1, 1, 1]
    forces = np.array(result["forces"])
    assert forces.shape == (len(cube), 3) and np.all(np.isfinite(forces))
    through_database(cube, result, tmp_path)


LARGE_CELLS = """
project: {name: emt_al_large}
elements: [Al]
structures:
  generator: {prototype: fcc, cubic: true, supercell: [3, 3, 3], rattled: 2, strained: 1}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 16}
exploration: {temperatures: [900], ensembles: [nvt], steps: 60, check_interval: 10, gamma_select: 1.2,
              gamma_halt: 50.0}
selection: {max_per_generation: 2, embed_core_radius: 3.0, embed_buffer: 2.0}
loop: {max_generations: 2, dft_budget: 20, seed: 1}
assess: {enabled: false}
"""


def test_the_loop_labels_and_trains_on_cells_cut_from_large_md_frames(tmp_path):
    """108-atom MD cells are cut to 10 A cubes; the loop labels them (EMT) and trains generation 1 on them.
    About 20 s."""
    (tmp_path / "input.yaml").write_text(LARGE_CELLS)
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlip-auto"),
            "run",
            str(tmp_path / "input.yaml"),
            "--site",
            "threads",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    db = DatabaseManager(tmp_path / "emt_al_large" / "structures.db")
    rows = db.structures(config_type="embedded")  # the last generation's picks stay unlabelled
    assert all(row.energy_weight == 0.0 for row in rows)
    cells = [db.get(row.uuid) for row in rows if row.labelled]
    assert cells
    assert all(len(c) < 108 and 0 < c.arrays["force_mask"].sum() < len(c) for c in cells)
    with EventStore.open_existing(tmp_path / "emt_al_large" / "events.sqlite") as store:
        trained = [e.payload for e in store.events() if e.kind == "model.trained"]
    assert trained[-1]["generation"] == 1
    assert trained[-1]["metrics"]["by_config_type"]["embedded"]["force_rmse_mev_a"] is not None
