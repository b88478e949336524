"""Slabs in the starting set (`structures.generator.surfaces`): their geometry, and a real EMT run in which
they are labelled and explored at constant volume even where the schedule says NPT."""

import subprocess

import numpy as np
import pytest
from ase.build import bulk
from installed import MLIP_AUTO

from autopipe.apps.structures import GeneratorSettings, atoms_from_dict, has_vacuum, initial_structures
from autopipe.events import EventStore, fold


def test_slabs_have_their_layers_their_vacuum_and_periodic_cells():
    frames = initial_structures({"generator": {"prototype": "fcc", "a": 4.0, "rattled": 1, "strained": 1,
                                               "vacancies": 1, "surfaces": [[1, 1, 1], [1, 0, 0]],
                                               "slab_layers": 3, "slab_vacuum": 8.0}}, ["Al"], seed=0)
    atoms = [atoms_from_dict(f) for f in frames]
    slabs = [a for a in atoms if "slab" in a.info["source"]]
    assert [a.info["source"] for a in slabs] == ["fcc-Al (111) slab, 3 layers", "fcc-Al (100) slab, 3 layers"]
    assert all(a.pbc.all() and len(a) >= 8 for a in slabs)
    for slab in slabs:
        heights = slab.positions @ (slab.cell.reciprocal()[2] / np.linalg.norm(slab.cell.reciprocal()[2]))
        thickness = heights.max() - heights.min()
        assert slab.cell.volume / np.linalg.norm(np.cross(*slab.cell[:2])) - thickness == pytest.approx(8.0, abs=0.4)
    assert [has_vacuum(a) for a in atoms] == [False] * 4 + [True, True]  # ideal, rattled, strained, vacancy


def test_vacuum_is_told_from_open_but_dense_crystals():
    assert not has_vacuum(bulk("Si", "diamond", a=5.43, cubic=True))
    assert not has_vacuum(bulk("Mg", "hcp", a=3.21, c=5.21).repeat((1, 1, 2)))
    stretched = bulk("Al", cubic=True)
    stretched.cell[2] *= 3  # the same atoms, a 8 A gap along z
    assert has_vacuum(stretched)


def test_a_plane_needs_nonzero_miller_indices():
    with pytest.raises(ValueError, match=r"\(0, 0, 0\) is not a plane"):
        GeneratorSettings(prototype="fcc", surfaces=[(0, 0, 0)])


INPUT = """
project: {name: emt_slab}
elements: [Al]
structures:
  generator: {prototype: fcc, cubic: true, rattled: 3, strained: 1, surfaces: [[1, 1, 1]], slab_layers: 2,
              slab_vacuum: 6.0}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 12, test_fraction: 0.0}
exploration: {temperatures: [300, 400, 500, 600, 700, 800], ensembles: [npt], pressures: [2], steps: 40, check_interval: 10,
              gamma_select: 3.0, gamma_halt: 30.0}
selection: {max_per_generation: 1}
loop: {max_generations: 2, dft_budget: 12, seed: 1}
assess: {enabled: false}
"""


def test_the_loop_labels_the_slab_and_explores_it_at_constant_volume(tmp_path):
    (tmp_path / "input.yaml").write_text(INPUT)
    result = subprocess.run([MLIP_AUTO, "run", str(tmp_path / "input.yaml"), "--site", "threads"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    with EventStore.open_existing(tmp_path / "emt_slab" / "events.sqlite") as store:
        state = fold(store.events())
    walkers = [t for t in state.tasks.values() if t.kind == "explore" and t.generation == 0]
    assert len(walkers) == len(state.labels_done(0)) == 6  # six slots, six starts: ideal, 3 rattled, strained, slab
    on_slab = [w for w in walkers if w.label.endswith("from fcc-Al (111) slab, 2 layers")]  # the task's label
    assert len(on_slab) == 1 and ", NVT, " in on_slab[0].label
    assert on_slab[0].result["pressure"] is None and on_slab[0].result["steps_done"] > 0
    assert all(w.result["pressure"] == 2 and ", NPT 2 GPa, " in w.label for w in walkers if w not in on_slab)
