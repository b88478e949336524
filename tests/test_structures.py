"""Starting structures: what the INIT step makes from a prototype or reads from files."""

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import write

from autopipe.apps.structures import atoms_from_dict, initial_structures
from autopipe.errors import ConfigError


def generate(elements=("Al",), seed=0, **generator):
    frames = initial_structures({"generator": {"prototype": "fcc", **generator}}, list(elements), seed)
    return [atoms_from_dict(frame) for frame in frames]


def test_default_generator_gives_ideal_four_rattled_two_strained_cubic_cells():
    frames = generate()
    assert [a.info["source"] for a in frames] == [
        "fcc-Al ideal",
        *(f"fcc-Al rattled {i}" for i in range(1, 5)),
        "fcc-Al strained 1",
        "fcc-Al strained 2",
    ]
    assert all(len(a) == 4 and a.get_chemical_formula() == "Al4" and a.pbc.all() for a in frames)
    assert np.allclose(frames[0].cell.lengths(), [4.05] * 3)  # ASE's reference lattice constant


@pytest.mark.parametrize(
    ("generator", "count", "atoms"),
    [
        ({"supercell": [2, 1, 1], "rattled": 1, "strained": 0}, 2, 8),
        ({"cubic": False, "include_ideal": False, "rattled": 0, "strained": 3}, 3, 1),
        ({"prototype": "hcp", "formula": "Mg", "rattled": 0, "strained": 0}, 1, 4),  # orthorhombic hcp cell
        ({"prototype": "rocksalt", "formula": "NaCl", "a": 5.64, "rattled": 2, "strained": 0}, 3, 8),
    ],
)
def test_counts_and_cell_sizes(generator, count, atoms):
    frames = generate(elements=("Al", "Na", "Cl", "Mg"), **generator)
    assert len(frames) == count
    assert {len(a) for a in frames} == {atoms}


def test_rocksalt_uses_both_species_of_the_formula():
    ideal = generate(elements=("Na", "Cl"), prototype="rocksalt", formula="NaCl", a=5.64)[0]
    assert ideal.get_chemical_formula() == "Cl4Na4"
    assert ideal.cell.lengths() == pytest.approx([5.64] * 3)


def test_same_seed_same_structures_other_seed_other_structures():
    first, again, other = generate(seed=7), generate(seed=7), generate(seed=8)
    assert all(
        np.array_equal(a.positions, b.positions) and np.array_equal(a.cell, b.cell)
        for a, b in zip(first, again)
    )
    assert not np.allclose(first[1].positions, other[1].positions)
    assert not np.allclose(first[-1].cell, other[-1].cell)


def test_rattled_copies_spread_evenly_from_rattle_stdev_to_max_rattle_stdev_and_keep_the_cell():
    frames = generate(supercell=[3, 3, 3], rattled=3, strained=0, rattle_stdev=0.05, max_rattle_stdev=0.15)
    ideal = frames[0]
    for rattled, stdev in zip(frames[1:], [0.05, 0.10, 0.15], strict=True):
        displacement = rattled.positions - ideal.positions
        assert displacement.std() == pytest.approx(stdev, rel=0.15)  # 324 Gaussian samples
        assert np.abs(displacement.mean()) < 0.2 * stdev
        assert np.array_equal(rattled.cell, ideal.cell)


def test_equal_rattle_bounds_give_every_copy_the_same_spread():
    frames = generate(supercell=[3, 3, 3], rattled=2, strained=0, rattle_stdev=0.1, max_rattle_stdev=0.1)
    for rattled in frames[1:]:
        assert (rattled.positions - frames[0].positions).std() == pytest.approx(0.1, rel=0.15)


def test_strain_is_symmetric_bounded_and_keeps_fractional_positions():
    frames = generate(rattled=0, strained=5, max_strain=0.02)
    ideal = frames[0]
    for strained in frames[1:]:
        strain = np.linalg.solve(ideal.cell.array, strained.cell.array) - np.eye(3)
        assert np.allclose(strain, strain.T)
        assert 0 < np.abs(strain).max() <= 0.02
        assert np.allclose(strained.get_scaled_positions(), ideal.get_scaled_positions())


def test_unknown_lattice_constant_names_the_key():
    with pytest.raises(ConfigError, match=r"structures\.generator\.a: .*Al as bcc"):
        generate(prototype="bcc")


def test_files_are_read_frame_by_frame_before_generated_structures(tmp_path):
    write(tmp_path / "start.xyz", [bulk("Cu", cubic=True), bulk("Cu", a=3.7) * (2, 1, 1)])
    frames = initial_structures(
        {
            "files": [str(tmp_path / "start.xyz")],
            "generator": {"prototype": "fcc", "rattled": 0, "strained": 0},
        },
        ["Cu"],
        seed=0,
    )
    assert [f["info"]["source"] for f in frames] == ["start.xyz[0]", "start.xyz[1]", "fcc-Cu ideal"]
    assert [len(f["numbers"]) for f in frames] == [4, 2, 4]
    assert atoms_from_dict(frames[1]).cell.lengths()[0] == pytest.approx(2 * 3.7 / np.sqrt(2))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"structures\.files\[1\]: the structure file .*missing\.xyz does not exist"),
        ("this is not\nan xyz file\n", r"structures\.files\[1\]: ase\.io\.read cannot read"),
        (bulk("NaCl", "rocksalt", a=5.6), r"structures\.files\[1\]: frame 0 .* contains Cl, Na"),
        (molecule("H2O"), r"structures\.files\[1\]: frame 0 .* no full 3D cell"),
    ],
    ids=["missing", "garbage", "foreign-elements", "no-cell"],
)
def test_bad_structure_files_name_their_index(tmp_path, content, message):
    good, bad = tmp_path / "good.xyz", tmp_path / "missing.xyz"
    write(good, bulk("Cu"))
    if isinstance(content, str):
        bad.write_text(content)
    elif content is not None:
        write(bad, content)
    with pytest.raises(ConfigError, match=message):
        initial_structures({"files": [str(good), str(bad)]}, ["Cu", "H", "O"], seed=0)


def test_scaled_copies_span_the_volume_range_and_vacancy_copies_miss_one_atom():
    structures = initial_structures(
        {"generator": {"prototype": "fcc", "rattled": 0, "strained": 0, "scaled": 5, "max_volume_change": 0.1,
                       "vacancies": 2}}, ["Al"], seed=0)
    atoms = [atoms_from_dict(s) for s in structures]
    ideal = atoms[0].get_volume()
    scaled = [a.get_volume() / ideal for a in atoms if "scaled" in a.info["source"]]
    assert scaled == pytest.approx([0.9, 0.95, 1.0, 1.05, 1.1])
    vacancies = [a for a in atoms if "vacancy" in a.info["source"]]
    assert [len(a) for a in vacancies] == [7, 7]  # two 4-atom cells, one atom removed
    assert vacancies[0].get_volume() == pytest.approx(2 * ideal)
