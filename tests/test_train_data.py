"""TRAIN data ingestion: the extxyz the core writes -> Pacemaker's dataset, weights, references, split.

`emt_frames` / `write_frames` are shared by the other test_train_* modules: EMT-labelled fcc Al cells
written exactly as the core writes them (SinglePointCalculator results, uuid, config_type, generation).
"""

import uuid
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from autopipe.apps.structures.sources import is_reference
from autopipe.apps.train import TrainingFailure, TrainingSettings, fit
from autopipe.apps.train import dataset as ds


def emt_frames(
    n: int, *, start: int = 0, repeat=(2, 1, 1), rattle: float = 0.1, generation: int = 0
) -> list[Atoms]:
    """`n` EMT-labelled Al cells (lattice +-3 %, rattled), alternately config_type initial / md."""
    rng = np.random.default_rng(start)
    frames = []
    for i in range(start, start + n):
        atoms = bulk("Al", "fcc", a=4.05 * rng.uniform(0.97, 1.03), cubic=True).repeat(repeat)
        atoms.rattle(rattle, seed=i)
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        atoms.info.update(
            uuid=str(uuid.UUID(int=i)), config_type="md" if i % 2 else "initial", generation=generation
        )
        frames.append(atoms)
    return frames


def write_frames(path: Path, frames: list[Atoms]) -> str:
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_masks_and_weights_survive_the_extxyz_round_trip(tmp_path):
    frames = emt_frames(2)
    frames[1].arrays["force_mask"] = np.array([1, 0, 0, 1, 1, 1, 1, 1])
    frames[1].info["energy_weight"] = 0.0
    df = ds.read_dataset(write_frames(tmp_path / "d.extxyz", frames))
    assert list(df["name"]) == [f.info["uuid"] for f in frames]
    assert list(df["config_type"]) == ["initial", "md"]
    assert list(df["w_energy"]) == [1.0, 0.0]
    assert df["w_forces"][1].tolist() == [1, 0, 0, 1, 1, 1, 1, 1]
    assert np.allclose(df["forces"][0], frames[0].get_forces())
    assert df["energy"][0] == pytest.approx(frames[0].get_potential_energy())


def test_normalized_weights_sum_to_one_like_pacemaker():
    df = pd.DataFrame(
        {"w_energy": [1.0, 0.0, 3.0], "w_forces": [np.ones(2), np.array([0.0, 1.0]), np.ones(3)]}
    )
    out = ds.normalized_weights(df)
    assert out["w_energy"].tolist() == [0.25, 0.0, 0.75]
    assert sum(w.sum() for w in out["w_forces"]) == pytest.approx(1.0)
    assert out["w_forces"][1][0] == 0.0


def test_validation_membership_is_fixed_as_the_dataset_grows():
    names = pd.Series([str(uuid.UUID(int=i)) for i in range(600)])
    small = ds.validation_mask(names[:200], 0.2, seed=7)
    grown = ds.validation_mask(names, 0.2, seed=7)
    assert (grown[:200] == small).all()
    assert 0.12 < grown.mean() < 0.28
    assert (ds.validation_mask(names, 0.2, seed=8) != grown).any()  # the seed matters


def test_the_starting_structures_always_give_the_fixed_validation_set_one():
    names = pd.Series([str(uuid.UUID(int=i)) for i in range(40)])
    seed = next(s for s in range(1000) if not ds.validation_mask(names[:8], 0.1, seed=s).any())
    starting = np.arange(40) < 8
    alone = ds.validation_mask(names[:8], 0.1, seed=seed, starting=starting[:8])
    grown = ds.validation_mask(names, 0.1, seed=seed, starting=starting)
    assert alone.sum() == 1 and (grown[:8] == alone).all()  # the same one, however the data grow
    plain = ds.validation_mask(names, 0.1, seed=seed)
    assert (grown[8:] == plain[8:]).all() and grown.sum() == plain.sum() + 1
    lucky = next(s for s in range(1000) if ds.validation_mask(names[:8], 0.1, seed=s).any())
    assert (ds.validation_mask(names[:8], 0.1, lucky, starting=starting[:8])
            == ds.validation_mask(names[:8], 0.1, lucky)).all()  # the hashes already gave it one


def test_reference_structures_are_never_held_out():
    """An alloy's end members fix the elements' energies; in validation they would fix nothing."""
    names = pd.Series([str(uuid.UUID(int=i)) for i in range(40)])
    plain = ds.validation_mask(names, 0.3, seed=0)
    reference = np.zeros(40, dtype=bool)
    reference[np.flatnonzero(plain)[:2]] = True  # two the hashes would hold out
    kept = ds.validation_mask(names, 0.3, seed=0, always_train=reference)
    assert not kept[reference].any()
    assert (kept[~reference] == plain[~reference]).all()  # nothing else moves
    # the starting set's fallback holds out a structure that is not a reference
    seed = next(s for s in range(1000) if not ds.validation_mask(names[:8], 0.1, seed=s).any())
    scores = [ds._unit_hash(f"{seed}:{n}") for n in names[:8]]
    smallest = np.zeros(8, dtype=bool)
    smallest[int(np.argmin(scores))] = True
    fallback = ds.validation_mask(names[:8], 0.1, seed=seed, starting=[True] * 8, always_train=smallest)
    assert fallback.sum() == 1 and not fallback[smallest].any()
    assert is_reference("fcc-Cu end member") and is_reference("fcc-Al (111) slab, 4 layers")
    assert not is_reference("fcc-Al0.5Cu0.5 rattled 1") and not is_reference("MD 900 K seed 5 step 170")


def test_split_keeps_at_least_one_training_structure():
    names = pd.Series(["a", "b", "c"])
    mask = ds.validation_mask(names, 0.999999, seed=0)
    assert mask.sum() == 2 and (~mask).sum() == 1


def test_auto_reference_puts_the_most_expanded_structure_at_zero(tmp_path):
    df = ds.read_dataset(write_frames(tmp_path / "d.extxyz", emt_frames(6)))
    reference = ds.reference_energies(df, ["Al"], "auto")
    ds.add_corrected_energy(df, reference["energies"])
    volume_per_atom = df["ase_atoms"].map(lambda a: a.get_volume() / len(a))
    largest = volume_per_atom.idxmax()
    assert reference["method"] == "auto"
    assert df["energy_corrected"][largest] == pytest.approx(0.0, abs=1e-9)


def test_auto_reference_ignores_structures_without_energy_weight(tmp_path):
    frames = emt_frames(6)
    df = ds.read_dataset(write_frames(tmp_path / "d.extxyz", frames))
    largest = int(df["ase_atoms"].map(lambda a: a.get_volume()).idxmax())  # the structure auto anchors on
    df.loc[largest, "energy"] = 1e6  # an embedded cell's energy must not shift the reference...
    assert ds.reference_energies(df, ["Al"], "auto")["energies"]["Al"] > 1e4
    df.loc[largest, "w_energy"] = 0.0  # ...and with energy_weight 0 it does not
    rest = ds.read_dataset(write_frames(tmp_path / "rest.extxyz", frames[:largest] + frames[largest + 1 :]))
    assert ds.reference_energies(df, ["Al"], "auto") == ds.reference_energies(rest, ["Al"], "auto")


def test_isolated_atom_reference_is_subtracted_per_atom(tmp_path):
    df = ds.read_dataset(write_frames(tmp_path / "d.extxyz", emt_frames(2)))
    reference = ds.reference_energies(df, ["Al"], {"Al": -0.5})
    ds.add_corrected_energy(df, reference["energies"])
    assert reference == {"method": "isolated_atoms", "energies": {"Al": -0.5}}
    assert np.allclose(df["energy_corrected"], df["energy"] + 0.5 * 8)


def test_reference_mapping_must_cover_every_element(tmp_path):
    df = ds.read_dataset(write_frames(tmp_path / "d.extxyz", emt_frames(2)))
    with pytest.raises(TrainingFailure, match=r"not for \['Cu'\]") as err:
        ds.reference_energies(df, ["Al", "Cu"], {"Al": -0.5})
    assert err.value.kind == "missing_reference_energy"


def test_empty_dataset_is_a_named_error(tmp_path):
    empty = tmp_path / "dataset.extxyz"
    empty.write_text("")
    with pytest.raises(TrainingFailure, match="missing or empty") as err:
        fit(str(empty), TrainingSettings().model_dump(mode="json"), ["Al"], str(tmp_path / "fit"))
    assert err.value.kind == "empty_dataset"
    assert not (tmp_path / "fit" / "potential.yaml").exists()


def test_element_of_the_run_missing_from_the_data_is_a_named_error(tmp_path):
    dataset = write_frames(tmp_path / "d.extxyz", emt_frames(4))
    with pytest.raises(TrainingFailure, match=r"no training structure contains \['Cu'\]") as err:
        fit(dataset, TrainingSettings().model_dump(mode="json"), ["Al", "Cu"], str(tmp_path / "fit"))
    assert err.value.kind == "missing_element"


def test_element_outside_the_run_is_a_named_error(tmp_path):
    dataset = write_frames(tmp_path / "d.extxyz", emt_frames(4))
    with pytest.raises(TrainingFailure, match=r"contain \['Al'\]") as err:
        fit(dataset, TrainingSettings().model_dump(mode="json"), ["Cu"], str(tmp_path / "fit"))
    assert err.value.kind == "unexpected_element"


def test_nan_label_is_refused(tmp_path):
    frames = emt_frames(2)
    forces = frames[1].get_forces()
    forces[3, 0] = np.nan
    frames[1].calc = SinglePointCalculator(frames[1], energy=frames[1].get_potential_energy(), forces=forces)
    with pytest.raises(TrainingFailure, match="frame 1 has a non-finite") as err:
        ds.read_dataset(write_frames(tmp_path / "d.extxyz", frames))
    assert err.value.kind == "invalid_dataset"


def test_only_embedded_cells_leave_nothing_to_fit_energies_on(tmp_path):
    frames = emt_frames(4)
    for atoms in frames:
        atoms.info["energy_weight"] = 0.0
    dataset = write_frames(tmp_path / "d.extxyz", frames)
    with pytest.raises(TrainingFailure, match="non-zero energy_weight") as err:
        fit(dataset, TrainingSettings().model_dump(mode="json"), ["Al"], str(tmp_path / "fit"))
    assert err.value.kind == "empty_dataset"


def test_element_seen_only_in_validation_counts_as_missing(tmp_path):
    frames = emt_frames(30)
    names = pd.Series([atoms.info["uuid"] for atoms in frames])
    held_out = int(np.flatnonzero(ds.validation_mask(names, 0.1, seed=42))[0])
    frames[held_out].symbols[0] = "Cu"  # the only Cu atom sits in a validation structure
    dataset = write_frames(tmp_path / "d.extxyz", frames)
    with pytest.raises(TrainingFailure, match=r"no training structure contains \['Cu'\]") as err:
        fit(dataset, TrainingSettings().model_dump(mode="json"), ["Al", "Cu"], str(tmp_path / "fit"))
    assert err.value.kind == "missing_element"


def test_an_end_member_the_hashes_hold_out_still_trains(tmp_path):
    """The same set-up as above, but the Cu structure is an alloy's end member: the trainer keeps it."""
    from autopipe.apps.train.trainer import PacemakerTrainer

    frames = emt_frames(30)
    names = pd.Series([atoms.info["uuid"] for atoms in frames])
    held_out = int(np.flatnonzero(ds.validation_mask(names, 0.1, seed=42))[0])
    frames[held_out].symbols[0] = "Cu"
    frames[held_out].info["source"] = "fcc-Cu end member"
    dataset = write_frames(tmp_path / "d.extxyz", frames)
    trainer = PacemakerTrainer(TrainingSettings(), ["Al", "Cu"], tmp_path / "fit")
    train, validation, _ = trainer._prepare_data(dataset)
    assert frames[held_out].info["uuid"] in set(train["name"])
    assert len(validation) == int(ds.validation_mask(names, 0.1, seed=42).sum()) - 1
