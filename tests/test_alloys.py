"""Alloy starting sets (`structures.generator.occupation`, `sqs`): exact compositions, SQS correlations
against random decorations, and the input's errors."""

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from autopipe.apps.structures import atoms_from_dict, initial_structures
from autopipe.config import load_config
from autopipe.errors import ConfigError

ALLOY = {"prototype": "fcc", "a": 3.8, "supercell": [2, 2, 2], "rattled": 2, "strained": 1, "vacancies": 1,
         "surfaces": [[1, 1, 1]], "occupation": {"Al": 0.5, "Cu": 0.5}}


def structures(**generator) -> list:
    return [atoms_from_dict(s) for s in initial_structures({"generator": {**ALLOY, **generator}}, ["Al", "Cu"], 0)]


def unlike_neighbour_fraction(atoms) -> float:
    """Share of nearest-neighbour pairs that join Al and Cu: 0.5 in the random 50/50 alloy."""
    i, j = neighbor_list("ij", atoms, 0.85 * 3.8)
    numbers = atoms.numbers
    return float(np.mean(numbers[i] != numbers[j]))


@pytest.mark.parametrize("sqs", [False, True])
def test_every_structure_has_the_composition_and_its_own_decoration(sqs):
    frames = structures(sqs=sqs, end_members=False)
    assert [a.info["source"].split(" ", 1)[1] for a in frames] == [
        "ideal", "rattled 1", "rattled 2", "strained 1", "vacancy 1", "(111) slab, 4 layers"]
    assert all(a.info["source"].startswith("fcc-Al0.5Cu0.5 ") for a in frames)
    formulas = [a.get_chemical_formula() for a in frames]
    assert formulas[:4] + formulas[5:] == ["Al16Cu16"] * 4 + ["Al8Cu8"]
    assert formulas[4] in ("Al15Cu16", "Al16Cu15")  # the vacancy: one atom of either kind removed
    bulk_cells = frames[:4]
    assert len({tuple(a.numbers) for a in bulk_cells}) == 4  # each decorated on its own
    again = structures(sqs=sqs, end_members=False)
    assert all(np.array_equal(a.numbers, b.numbers) for a, b in zip(frames, again, strict=True))  # seeded


def test_end_members_follow_the_alloy_cells_unchanged():
    """With every cell at Al16Cu16 only E_Al + E_Cu is determined; one pure cell of each element fixes the
    split. They come last, so the alloy cells (and their random draws) are those of `end_members: false`."""
    alloy = structures(end_members=False)
    frames = structures()
    assert [a.info["source"] for a in frames[len(alloy):]] == ["fcc-Al end member", "fcc-Cu end member"]
    assert [a.get_chemical_formula() for a in frames[len(alloy):]] == ["Al32", "Cu32"]
    ideal = frames[0]
    for pure in frames[len(alloy):]:
        assert np.allclose(pure.cell, ideal.cell)  # the alloy's lattice
        displacement = pure.positions - ideal.positions
        assert 0.05 < displacement.std() < 0.15  # rattled by rattle_stdev (0.1 A)
    assert all(np.array_equal(a.positions, b.positions) and np.array_equal(a.numbers, b.numbers)
               for a, b in zip(alloy, frames, strict=False))


def test_sqs_cells_have_the_random_alloys_neighbour_correlation():
    only_bulk = {"strained": 0, "vacancies": 0, "surfaces": [], "end_members": False}
    sqs = [unlike_neighbour_fraction(a) for a in structures(sqs=True, rattled=0, **only_bulk)]
    random = [unlike_neighbour_fraction(a) for a in structures(rattled=9, **only_bulk)]
    assert sqs == pytest.approx([0.5], abs=0.02)
    assert max(abs(f - 0.5) for f in random) > 0.03  # ten random cells stray further than the SQS


@pytest.mark.parametrize(("generator", "message"), [
    ({"occupation": {"Al": 0.5, "Ni": 0.5}}, "occupation names Ni, not in elements"),
    ({"occupation": {"Al": 0.5, "Cu": 0.4}}, "fractions that add up to 1"),
    ({"sqs": True}, "sqs needs occupation"),
    ({"prototype": "rocksalt", "formula": "NaCl", "occupation": {"Al": 0.5, "Cu": 0.5}},
     "one-species prototype"),
])
def test_bad_alloy_settings_name_the_key(tmp_path, generator, message):
    path = tmp_path / "input.yaml"
    settings = {"prototype": "fcc", "a": 3.8, **generator}
    path.write_text(f"project: {{name: p}}\nelements: [Al, Cu]\nstructures: {{generator: {settings}}}\n"
                    "dft: {engine: emt}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "structures.generator" in str(err.value)


def test_end_members_change_the_init_key_only_where_they_act(tmp_path):
    """The INIT key names the starting structures (their uuids, hence the validation split): a setting that
    changes nothing INIT makes must not change it, or every pure-metal run would get another split."""
    from autopipe.workflow import init_task

    def key(elements: str, **generator) -> str:
        path = tmp_path / "input.yaml"
        settings = {"prototype": "fcc", "a": 3.8, **generator}
        path.write_text(f"project: {{name: p}}\nelements: {elements}\nstructures: {{generator: {settings}}}\n"
                        "dft: {engine: emt}\n")
        return init_task(load_config(path))[0]

    assert key("[Al]") == key("[Al]", end_members=False)
    alloy = {"occupation": {"Al": 0.5, "Cu": 0.5}}
    assert key("[Al, Cu]", **alloy) != key("[Al, Cu]", **alloy, end_members=False)
