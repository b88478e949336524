"""TRAIN settings: presets resolved into concrete values, bad hyperparameters refused, input.yaml rendered."""

import jinja2
import pytest
import yaml
from pydantic import ValidationError

from autopipe.apps.train import PRESETS, TrainingFailure, TrainingSettings, fit
from autopipe.apps.train.pacemaker_input import _ENV, basis_from_input, render_input


def test_a_dumped_model_holds_the_concrete_preset_values():
    dumped = TrainingSettings(accuracy="fast").model_dump(mode="json")
    assert dumped["functions_per_element"] == 50
    assert dumped["nradmax_by_orders"] == [10, 4, 2]
    assert dumped["ndensity"] == 1 and dumped["fs_parameters"] == [1.0, 1.0]
    assert TrainingSettings.model_validate(dumped) == TrainingSettings(accuracy="fast")


def test_nonlinear_mode_gets_pacemakers_two_density_embedding():
    settings = TrainingSettings(mode="nonlinear")
    assert settings.ndensity == 2 and settings.fs_parameters == [1.0, 1.0, 1.0, 0.5]


def test_explicit_values_win_over_the_preset():
    settings = TrainingSettings(accuracy="precise", functions_per_element=30)
    assert settings.functions_per_element == 30
    assert settings.lmax_by_orders == PRESETS["precise"]["lmax_by_orders"]


@pytest.mark.parametrize("accuracy", ["fast", "standard", "precise"])
def test_each_preset_builds_a_basis_of_its_size(accuracy):
    settings = TrainingSettings(accuracy=accuracy)
    text = render_input(settings, ["Al"], train_file="t.pkl.gzip", validation_file=None, backend="pyace")
    assert basis_from_input(text).total_number_of_functions == PRESETS[accuracy]["functions_per_element"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nradmax_by_orders": [8, 3]}, "must have the same length"),
        ({"lmax_by_orders": [1, 3, 2, 1]}, "its lmax must be 0"),
        ({"ndensity": 2}, "mode is 'linear'"),
        ({"mode": "nonlinear", "ndensity": 3}, "6 for ndensity 3"),
        ({"fs_parameters": [1, 0.5]}, "not allowed in linear mode"),
        ({"committee_size": 1}, "at least 2 models"),
        ({"reference_energy": {"Xx": -1.0}}, r"\['Xx'\] that are not element symbols"),
        ({"test_fraction": 1.0}, "less than 1"),
        ({"kappa": 1.5}, "less than or equal to 1"),
        ({"optimizer": "Adam"}, "'BFGS' or 'L-BFGS-B'"),
        ({"cutof": 6.0}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_hyperparameters_are_refused_with_the_key_named(values, message):
    with pytest.raises(ValidationError, match=message):
        TrainingSettings(**values)


def test_fit_refuses_invalid_settings_before_touching_the_workdir(tmp_path):
    with pytest.raises(TrainingFailure, match="cutoff") as err:
        fit(str(tmp_path / "none.extxyz"), {"cutoff": -1}, ["Al"], str(tmp_path / "fit"))
    assert err.value.kind == "invalid_settings"
    assert not (tmp_path / "fit").exists()


def test_rendered_input_is_the_yaml_pacemaker_reads():
    settings = TrainingSettings(mode="nonlinear", cutoff=6.5, kappa=0.1, l2_coeff=1e-9, max_iterations=7)
    text = render_input(
        settings,
        ["Cu", "Al"],
        train_file="/w/train.pkl.gzip",
        validation_file="/w/validation.pkl.gzip",
        backend="pyace",
    )
    parsed = yaml.safe_load(text)  # YAML 1.1 (PyYAML); pacemaker's ruamel reads 1.2, a superset here
    assert parsed["potential"]["elements"] == ["Al", "Cu"]
    assert parsed["potential"]["bonds"]["ALL"]["rcut"] == 6.5
    assert parsed["potential"]["embeddings"]["ALL"]["ndensity"] == 2
    assert parsed["fit"]["loss"] == {"kappa": 0.1, "L1_coeffs": 1e-8, "L2_coeffs": 1e-9}
    assert parsed["fit"]["maxiter"] == 7
    assert "repulsion" not in parsed["fit"]  # the trainer adds the core below the data, not pacemaker at it
    assert parsed["data"] == {"filename": "/w/train.pkl.gzip", "test_filename": "/w/validation.pkl.gzip"}
    assert parsed["backend"] == {"evaluator": "pyace", "batch_size": 100, "display_step": 7}


def test_template_refuses_a_missing_value():
    with pytest.raises(jinja2.UndefinedError, match="seed"):
        _ENV.get_template("input.yaml.j2").render(mode="linear", accuracy="fast", mode_note="")
