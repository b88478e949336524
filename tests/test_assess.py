"""ASSESS: the potential against a reference it never saw.

The fast tests measure known crystals with ASE's EMT through the same property code the assessment uses and
compare with the same numbers computed directly (ase.eos, finite differences, phonopy). The end-to-end tests
run small EMT projects ("DFT" is EMT here: named as such, the real-pw.x path is in test_assess_qe.py) to the
assessment, check its numbers against direct calculations with EMT and with the trained potential, check
that a potential fitted on one volume is declared not usable with exit code 3, and that the loop aims its
next exploration at what failed.
"""

import json
from pathlib import Path

import ase.db
import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from installed import mlip_auto
from pyace import PyACECalculator

from autopipe.apps.assess import properties as props
from autopipe.apps.assess.cells import (
    Crystal,
    elastic_cells,
    eos_cells,
    phonon_cells,
    phonon_setup,
    vacancy_cells,
)
from autopipe.errors import AssessmentError
from autopipe.events import EventStore, fold

INPUT = """
project: {{name: emt_al}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 6, rattle_stdev: 0.05, max_rattle_stdev: 0.05, strained: {strained},
              scaled: {scaled}, max_volume_change: 0.1}}
dft: {{engine: emt}}
training: {{mode: linear, accuracy: fast, functions_per_element: 16}}
exploration: {{temperatures: [300], steps: 100, check_interval: 10, gamma_select: {gamma_select}, gamma_halt: 50.0,
               ensembles: [nvt]}}
selection: {{max_per_generation: 2}}
loop: {{max_generations: {generations}, dft_budget: 40, seed: 3}}
assess:
  properties: {properties}
  max_rounds: {rounds}
  vacancy_supercell: [2, 1, 1]
  md: {{supercell: [2, 2, 2], steps: 60, snapshots: 1, temperature: 300}}
"""


def write_input(
    folder: Path,
    *,
    strained=2,
    scaled=5,
    generations=2,
    properties="[eos, elastic, phonons, vacancy, md_forces]",
    rounds=0,
    gamma_select=3.0,
) -> Path:
    path = folder / "input.yaml"
    path.write_text(
        INPUT.format(
            strained=strained,
            scaled=scaled,
            generations=generations,
            properties=properties,
            rounds=rounds,
            gamma_select=gamma_select,
        )
    )
    return path


def emt_results(cells):
    results = {}
    for atoms in cells:
        atoms.calc = EMT()
        results[atoms.info["assess"]] = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
            "n_atoms": len(atoms),
            "volume": atoms.get_volume(),
        }
    return results


@pytest.fixture(scope="module")
def copper():
    crystal = Crystal.from_atoms(bulk("Cu", "fcc", a=3.6, cubic=True))
    v0 = props.equation_of_state(emt_results(eos_cells(crystal, 9, 0.15)))["v0"]
    return crystal.at_volume(v0)


def test_standard_cells_of_a_cubic_crystal():
    crystal = Crystal.from_atoms(bulk("Al", "fcc", a=4.05, cubic=True).repeat(2))
    assert len(crystal.primitive) == 1 and len(crystal.conventional) == 4 and crystal.cubic
    assert crystal.lattice_constant(crystal.volume_per_atom) == pytest.approx(4.05)
    assert not Crystal.from_atoms(bulk("Mg", "hcp")).cubic


def test_equation_of_state_matches_ase_eos_on_the_same_volumes(copper):
    cells = eos_cells(copper, 7, 0.06)
    measured = props.equation_of_state(emt_results(cells))
    volumes = [c.get_volume() / len(c) for c in cells]
    energies = [emt_results([c])[c.info["assess"]]["energy"] / len(c) for c in cells]
    v0, _, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    assert measured["v0"] == pytest.approx(v0, rel=1e-6)
    assert measured["bulk_modulus"] == pytest.approx(b / units.GPa, rel=1e-6)
    assert copper.lattice_constant(measured["v0"]) == pytest.approx(3.59, abs=0.01)  # EMT Cu


def test_a_curve_without_minimum_is_a_named_failure(copper):
    results = emt_results(eos_cells(copper, 7, 0.06))
    for index, name in enumerate(sorted(results)):
        results[name]["energy"] = -index  # falls as the volume grows
    with pytest.raises(AssessmentError, match="no minimum") as caught:
        props.equation_of_state(results)
    assert caught.value.kind == "no_minimum"


def test_cubic_elastic_constants_agree_with_the_bulk_modulus_and_with_direct_strain(copper):
    constants = props.cubic_elastic_constants(emt_results(elastic_cells(copper, 0.005)), 0.005)
    bulk_modulus = props.equation_of_state(emt_results(eos_cells(copper, 7, 0.03)))["bulk_modulus"]
    assert (constants["C11"] + 2 * constants["C12"]) / 3 == pytest.approx(bulk_modulus, rel=0.03)
    sheared = copper.conventional.copy()  # C44 directly: energy of a pure shear, E/V = 2 C44 eps_yz^2
    sheared.set_cell(
        sheared.cell.array
        @ (np.eye(3) + 0.004 * (np.eye(3)[[1]].T @ np.eye(3)[[2]] + np.eye(3)[[2]].T @ np.eye(3)[[1]])),
        scale_atoms=True,
    )
    reference = copper.conventional.copy()
    sheared.calc, reference.calc = EMT(), EMT()
    direct = (sheared.get_potential_energy() - reference.get_potential_energy()) / reference.get_volume()
    assert constants["C44"] == pytest.approx(direct / (2 * 0.004**2) / units.GPa, rel=0.03)
    assert constants["C11"] > constants["C12"] > 0 and constants["C44"] > 0


def test_phonons_at_the_points_the_supercell_samples(copper):
    phonon = phonon_setup(copper, (2, 2, 2), 0.01)
    frequencies = props.phonon_frequencies(phonon, emt_results(phonon_cells(phonon)), copper)
    assert sorted(frequencies) == ["G", "L", "X"]  # K, U, W are not commensurate with 2x2x2
    assert max(abs(f) for f in frequencies["G"]) < 0.05  # acoustic modes vanish at Gamma
    assert 5.0 < max(frequencies["X"]) < 9.0  # Cu's highest X frequency is about 7.3 THz


def test_vacancy_formation_energy_is_the_difference_of_the_two_cells(copper):
    results = emt_results(vacancy_cells(copper, (2, 2, 2)))
    perfect, defect = results["vacancy/perfect"], results["vacancy/defect"]
    assert perfect["n_atoms"] == 32 and defect["n_atoms"] == 31
    expected = defect["energy"] - 31 / 32 * perfect["energy"]
    assert props.vacancy_formation_energy(results) == pytest.approx(expected)
    assert 0.5 < expected < 1.5  # unrelaxed EMT Cu, about 1.0 eV


@pytest.fixture(scope="module")
def assessed(tmp_path_factory) -> tuple[Path, dict]:
    """A small EMT project run to its assessment, then assessed again with `mlip-auto assess --json`."""
    input_path = write_input(tmp_path_factory.mktemp("assessed"))
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode in (0, 3), result.stdout + result.stderr
    assert "Assessment of generation 1" in result.stdout
    project = input_path.parent / "emt_al"
    again = mlip_auto("assess", str(project), "--site", "threads", "--json")
    verdict = json.loads(again.stdout)
    assert again.returncode == (0 if verdict["usable"] else 3), again.stderr
    return project, verdict


def test_assess_numbers_equal_direct_calculations_with_the_reference_and_the_potential(assessed):
    project, verdict = assessed
    rows = {row["name"]: row for row in verdict["rows"]}
    assert set(rows) >= {
        "a0",
        "B",
        "C11",
        "C12",
        "C44",
        "nu(X)",
        "nu(L)",
        "E_vac",
        "stable",
        "V_npt",
        "force RMSE",
    }
    crystal = Crystal.from_atoms(bulk("Al", "fcc", cubic=True)).at_volume(verdict["reference_volume"])
    assert verdict["dft_volume"] == pytest.approx(verdict["reference_volume"], rel=0.01)

    # The reference side (EMT standing in for DFT): EOS and vacancy recomputed directly.
    direct_v0 = EquationOfState(
        *zip(
            *[
                (a.get_volume() / len(a), emt_results([a])[a.info["assess"]]["energy"] / len(a))
                for a in eos_cells(Crystal.from_atoms(bulk("Al", "fcc", cubic=True)), 7, 0.15)
            ]
        ),
        eos="birchmurnaghan",
    ).fit()[0]
    assert rows["a0"]["dft"] == pytest.approx(
        Crystal.from_atoms(bulk("Al", "fcc", cubic=True)).lattice_constant(direct_v0), rel=2e-3
    )
    assert 3.95 < rows["a0"]["dft"] < 4.1 and 30 < rows["B"]["dft"] < 50  # EMT Al: about 4.05 A, 39 GPa

    # The potential's side: its own E(V) on the same volumes, with PyACECalculator directly.
    calc = PyACECalculator(str(project / "potentials" / "gen_001.yaml"))
    cells = eos_cells(crystal, 7, 0.06)
    energies = []
    for atoms in cells:
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    if rows["a0"]["potential"] is not None:
        v0, _, b = EquationOfState([a.get_volume() / len(a) for a in cells], energies, eos="birchmurnaghan").fit()
        assert rows["a0"]["potential"] == pytest.approx(crystal.lattice_constant(v0), rel=1e-6)
        assert rows["B"]["potential"] == pytest.approx(b / units.GPa, rel=1e-6)
        assert rows["a0"]["passed"] == (abs(rows["a0"]["error_percent"]) <= 1.0)
    for row in verdict["rows"]:
        assert row["passed"] in (True, False)
    assert verdict["usable"] == all(row["passed"] for row in verdict["rows"])


def test_assessment_structures_never_become_training_labels(assessed):
    project, verdict = assessed
    with EventStore.open_existing(project / "events.sqlite") as store:
        state = fold(store.events())
    references = [t for t in state.tasks.values() if t.kind == "reference"]
    assert len(references) >= verdict["n_references"] - 1 > 10
    label_keys = {t.key for t in state.labels_done()}
    assert label_keys.isdisjoint(t.key for t in references)
    with ase.db.connect(project / "structures.db") as db:
        rows = list(db.select())
        stored = {(len(r.numbers), round(r.volume, 6)) for r in rows}
        assert {r.get("task_key") for r in rows if r.get("task_key")} == label_keys
    reference_cells = [
        json.loads((project / "assessment" / "references" / t.key / "result.json").read_text())
        for t in references
    ]
    assert all(c["value"]["status"] == "ok" for c in reference_cells)
    # No stored structure has the geometry of an assessment cell: the volumes of the E(V) cells are not among them.
    crystal = Crystal.from_atoms(bulk("Al", "fcc", cubic=True)).at_volume(verdict["reference_volume"])
    assert not stored & {(len(c), round(c.get_volume(), 6)) for c in eos_cells(crystal, 7, 0.06)}


def test_a_second_assess_recomputes_no_reference(assessed):
    project, _ = assessed
    with EventStore.open_existing(project / "events.sqlite") as store:
        submitted = [
            e for e in store.events() if e.kind == "task.submitted" and e.payload["kind"] == "reference"
        ]
        assessments = [e.payload for e in store.events() if e.kind == "assessment.finished"]
    assert [a["source"] for a in assessments] == ["run", "cli"]
    assert len(submitted) == len({e.payload["key"] for e in submitted})  # each reference computed once


def test_a_potential_fitted_on_one_volume_is_not_usable_exit_3(tmp_path):
    input_path = write_input(tmp_path, strained=0, scaled=0, generations=1, properties="[eos]")
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode == 3, result.stdout + result.stderr
    assert (
        "DONE: not usable (a0" in result.stdout.replace("\n", " ") or "DONE: not usable (B" in result.stdout
    )
    with EventStore.open_existing(input_path.parent / "emt_al" / "events.sqlite") as store:
        state = fold(store.events())
    assert state.assessments[-1]["usable"] is False and state.assessments[-1]["failing"] == ["eos"]
    assert state.outcome == "done" and state.reason.startswith("not usable")


def test_a_failed_verdict_sends_walkers_aimed_at_it(tmp_path):
    input_path = write_input(
        tmp_path, strained=0, scaled=0, generations=4, properties="[eos]", rounds=1, gamma_select=40.0
    )
    result = mlip_auto("run", str(input_path), "--site", "threads")
    assert result.returncode in (0, 3), result.stdout + result.stderr
    with EventStore.open_existing(input_path.parent / "emt_al" / "events.sqlite") as store:
        state = fold(store.events())
    first = state.assessments[0]
    assert not first["usable"] and first["round"] == 0
    aimed = [t for t in state.tasks.values() if t.kind == "explore" and "NPT" in t.label]
    assert {t.label.split("NPT ")[1] for t in aimed} == {
        f"{p:g} GPa, from the assessed crystal at DFT's V0"
        for p in (-first["rows"][1]["dft"] * 0.06, first["rows"][1]["dft"] * 0.06)
    }
    assert state.structures[first["generation"] + 1].get("aimed"), "the aimed round selected nothing"
    assert len(state.assessments) == 2 and state.assessments[1]["round"] == 1
    assert result.returncode == (0 if state.assessments[-1]["usable"] else 3)
