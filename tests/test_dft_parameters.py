"""The parameter rule table (docs/dft.md) as a user would check it through `choose_parameters`."""

import math

import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule
from pydantic import ValidationError

from autopipe.apps.dft import choose_parameters
from autopipe.apps.dft.parameters import ECUTWFC_TABLE, MAGNETIC_MOMENTS, PRESETS
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import ConfigError, DFTError

PSEUDOS = {
    "Al": "Al.pz-vbc.UPF",
    "Fe": "Fe.pbe-nd-rrkjus.UPF",
    "H": "H.pbe-kjpaw.UPF",
    "Cu": "Cu.pbe-kjpaw.UPF",
    "O": "O.pbe-rrkjus.UPF",
}


def choose(atoms, **settings):
    return choose_parameters(
        atoms_to_dict(atoms), DFTSettings(pseudopotentials=PSEUDOS, **settings).model_dump(mode="json")
    )


def expected_kpts(atoms, kspacing):
    lengths = 2 * math.pi * np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    return [math.ceil(length / kspacing) for length in lengths]


def test_norm_conserving_cutoffs_from_the_element_table_and_dual_4():
    params = choose(bulk("Al"))
    assert params["ecutwfc"] == ECUTWFC_TABLE["Al"]
    assert params["ecutrho"] == 4 * params["ecutwfc"]
    assert "norm-conserving" in params["rules"]["ecutrho"]


def test_cutoffs_from_the_upf_header_take_the_largest_element_and_dual_8_for_paw():
    atoms = bulk("Al") * (2, 1, 1)
    atoms[1].symbol = "H"
    params = choose(atoms)
    assert params["ecutwfc"] == math.ceil(45.6556)  # H.pbe-kjpaw.UPF suggests 45.66 Ry, above Al's 30
    assert "(H, UPF header)" in params["rules"]["ecutwfc"]
    assert params["ecutrho"] == max(8 * params["ecutwfc"], math.ceil(201.134))


@pytest.mark.parametrize("accuracy", ["fast", "standard", "precise"])
def test_accuracy_presets_scale_cutoff_kpoints_smearing_and_threshold(accuracy):
    preset = PRESETS[accuracy]
    atoms = bulk("Cu", cubic=True)
    params = choose(atoms, accuracy=accuracy)
    assert params["ecutwfc"] == math.ceil(47.2228 * preset.cutoff_factor)
    assert params["ecutrho"] >= preset.dual_augmented * params["ecutwfc"]
    assert params["kpts"] == expected_kpts(atoms, preset.kspacing)
    assert params["degauss"] == preset.degauss and params["smearing"] == "mv"
    assert params["conv_thr"] == pytest.approx(preset.conv_thr_per_atom * 4)


def test_settings_override_every_rule():
    params = choose(
        bulk("Fe"),
        ecutwfc=22,
        ecutrho=150,
        kspacing=0.7,
        degauss=0.03,
        conv_thr=1e-7,
        mixing_beta=0.3,
        spin="off",
        smearing="gaussian",
    )
    assert (params["ecutwfc"], params["ecutrho"], params["degauss"]) == (22, 150, 0.03)
    assert params["kpts"] == expected_kpts(bulk("Fe"), 0.7)
    assert (params["nspin"], params["mixing_beta"], params["smearing"]) == (1, 0.3, "gaussian")
    assert params["conv_thr"] == pytest.approx(1e-7)
    assert params["rules"]["ecutwfc"] == "dft.ecutwfc"


def test_vacuum_direction_gets_a_single_kpoint():
    slab = fcc111("Al", size=(2, 2, 3), vacuum=6.0)
    params = choose(slab, kspacing=0.3)
    assert params["kpts"][2] == 1 and params["kpts"][:2] == expected_kpts(slab, 0.3)[:2]
    assert "vacuum direction(s) [2]" in params["rules"]["kpts"]


def test_molecule_in_a_box_is_gamma_only():
    water = molecule("H2O", vacuum=5.0, pbc=True)
    assert choose(water)["kpts"] == [1, 1, 1]


def test_magnetic_element_turns_spin_on_with_moment_over_valence():
    params = choose(bulk("Fe"))
    assert params["nspin"] == 2
    assert params["starting_magnetization"] == {"Fe": round(MAGNETIC_MOMENTS["Fe"] / 8.0, 4)}  # z_valence 8


def test_spin_stays_off_for_nonmagnetic_elements_unless_forced():
    assert choose(bulk("Al"))["nspin"] == 1
    forced = choose(bulk("Al"), spin="on")
    assert forced["nspin"] == 2 and forced["starting_magnetization"]["Al"] > 0


def test_structure_without_cell_is_a_config_error_for_pw():
    with pytest.raises(ConfigError, match="pw.x needs a periodic cell"):
        choose(molecule("H2O"))


def test_missing_pseudopotential_is_a_config_error_naming_the_key():
    atoms = bulk("Ni")
    with pytest.raises(ConfigError, match="dft.pseudopotentials.Ni"):
        choose(atoms)


def test_emt_engine_has_its_own_parameters_and_refuses_unknown_elements():
    emt = choose_parameters(atoms_to_dict(bulk("Cu")), DFTSettings(engine="emt").model_dump(mode="json"))
    assert emt == {"engine": "emt", "asap_cutoff": False}
    with pytest.raises(DFTError, match="EMT has no parameters for Fe"):
        choose_parameters(atoms_to_dict(bulk("Fe")), DFTSettings(engine="emt").model_dump(mode="json"))


def test_pw_input_may_not_override_managed_keys():
    with pytest.raises(ValidationError, match=r"dft.pw_input.system.ecutwfc is chosen by the DFT factory"):
        DFTSettings(pw_input={"system": {"ecutwfc": 30}})
    with pytest.raises(ValidationError, match="unknown namelist"):
        DFTSettings(pw_input={"ions": {"ion_dynamics": "bfgs"}})
    assert DFTSettings(pw_input={"ELECTRONS": {"mixing_mode": "local-TF"}}).pw_input == {
        "electrons": {"mixing_mode": "local-TF"}
    }


@pytest.mark.parametrize(
    ("section", "key"),
    [("control", "calculation "), ("system", "ecutwfc "), ("SYSTEM", " EcutRho"), ("system", "nbnd\t"),
     ("system", "starting_magnetization(1)"), ("system", "Starting_Magnetization (2)"),
     ("electrons", "startingpot")],
)
def test_managed_keys_are_recognised_however_they_are_spelled(section, key):
    """pw.x ignores case and blanks: `"calculation ": relax` would otherwise relax the structure
    behind the factory's back and store the relaxed energy against the unrelaxed positions."""
    with pytest.raises(ValidationError, match="is chosen by the DFT factory"):
        DFTSettings(pw_input={section: {key: 1}})


def test_pw_input_keys_are_stored_as_pw_x_reads_them_and_twins_are_refused():
    settings = DFTSettings(pw_input={" Electrons ": {"Mixing_Mode ": "local-TF", "mixing_ndim": 4}})
    assert settings.pw_input == {"electrons": {"mixing_mode": "local-TF", "mixing_ndim": 4}}
    with pytest.raises(ValidationError, match="mixing_mode is given twice"):
        DFTSettings(pw_input={"electrons": {"mixing_mode": "plain", "MIXING_MODE ": "local-TF"}})


@pytest.mark.parametrize(("repeat", "nbnd"), [((1, 1, 1), 10), ((2, 1, 1), 18), ((2, 2, 1), 36)])
def test_enough_bands_that_thermal_frames_of_a_metal_run_once(repeat, nbnd):
    """Al has 3 valence electrons: 4, 8 and 16 atoms hold 6, 12 and 24 occupied bands."""
    params = choose(bulk("Al", cubic=True) * repeat)
    assert params["nbnd"] == nbnd
    assert params["rules"]["nbnd"].startswith("max(1.5 x ")
