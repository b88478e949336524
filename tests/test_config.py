"""input.yaml -> SystemConfig: defaults, absolute paths, and a hash that identifies the run."""

import re
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.io import write
from pydantic import BaseModel

from autopipe.apps.dft.settings import DFTSettings
from autopipe.config import MinimalConfig, SystemConfig, expand, load_config, written_keys
from autopipe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PSEUDO = Path("/usr/share/espresso/pseudo/Al.pz-vbc.UPF")


def write_input(directory: Path, **sections) -> Path:
    data = {
        "project": {"name": "demo"},
        "elements": ["Al"],
        "structures": {"generator": {"prototype": "fcc"}},
        "dft": {"pseudopotentials": {"Al": "Al.pz-vbc.UPF"}},
        **sections,
    }
    path = directory / "input.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_expand_resolves_defaults_and_makes_paths_absolute(tmp_path, monkeypatch):
    (tmp_path / "pp").mkdir()
    shutil.copy(PSEUDO, tmp_path / "pp")
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "start.xyz", bulk("Al", cubic=True))
    path = write_input(
        tmp_path,
        structures={"files": ["data/start.xyz"], "generator": {"prototype": "fcc"}},
        dft={"pseudo_dir": "pp", "pseudopotentials": {"Al": "Al.pz-vbc.UPF"}},
    )
    monkeypatch.chdir("/")  # paths resolve against the input file, not the working directory
    config = load_config(path)
    assert config.structures.files == [tmp_path / "data" / "start.xyz"]
    assert config.dft.pseudo_dir == tmp_path / "pp"
    assert config.project_dir == tmp_path / "demo"
    assert config.structures.generator.formula == "Al"  # the first of `elements`
    assert config.dft == DFTSettings(pseudo_dir=tmp_path / "pp", pseudopotentials={"Al": "Al.pz-vbc.UPF"})
    assert (config.loop.max_generations, config.loop.dft_budget, config.loop.seed) == (6, 200, 0)
    assert config.exploration.temperatures == [300.0]


def test_workdir_overrides_the_project_directory_relative_to_the_current_directory(tmp_path, monkeypatch):
    path = write_input(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_config(path, workdir=Path("runs/one")).project_dir == tmp_path / "runs" / "one"
    assert not (tmp_path / "runs").exists()


def test_expand_without_a_file_uses_the_given_base_dir(tmp_path):
    minimal = MinimalConfig.model_validate(
        {
            "project": {"name": "x"},
            "elements": ["Cu"],
            "structures": {"files": ["a.xyz"]},
            "dft": {"engine": "emt"},
        }
    )
    config = expand(minimal, tmp_path)
    assert config.structures.files == [tmp_path / "a.xyz"]
    assert config.project_dir == tmp_path / "x"


def test_system_config_round_trips_through_json_with_the_same_hash(tmp_path):
    config = load_config(write_input(tmp_path))
    again = SystemConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.config_hash() == config.config_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", config.config_hash())


def test_hash_is_stable_across_loads_and_independent_of_the_project_directory(tmp_path):
    path = write_input(tmp_path)
    first = load_config(path)
    moved = load_config(path, workdir=tmp_path / "elsewhere")
    assert moved.project_dir != first.project_dir
    assert load_config(path).config_hash() == first.config_hash() == moved.config_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"exploration": {"steps": 400}},
        {"loop": {"seed": 1}},
        {"dft": {"pseudopotentials": {"Al": "Al.pz-vbc.UPF"}, "accuracy": "fast"}},
        {"structures": {"generator": {"prototype": "fcc", "rattled": 3}}},
    ],
)
def test_a_changed_setting_changes_the_hash(tmp_path, change):
    reference = load_config(write_input(tmp_path)).config_hash()
    assert load_config(write_input(tmp_path, **change)).config_hash() != reference


def test_how_labels_are_run_does_not_change_the_hash(tmp_path):
    """A run may resume on another site (launcher) or with longer limits: the labels stay the same."""
    reference = load_config(write_input(tmp_path)).config_hash()
    operational = {"pseudopotentials": {"Al": "Al.pz-vbc.UPF"}, "command": "mpirun -np 2 pw.x",
                   "timeout": 99.0, "max_attempts": 7, "omp_num_threads": 2, "max_failed_fraction": 0.1}
    assert load_config(write_input(tmp_path, dft=operational)).config_hash() == reference


def test_written_keys_are_what_the_file_writes_not_the_defaults_inside_a_section(tmp_path):
    """On resume only keys the user wrote can refuse the run; a section's unwritten keys are defaults."""
    written = written_keys(write_input(tmp_path, exploration={"temperatures": [300, 600]}))
    assert written["structures"] is False and written["structures.generator"] is False
    assert written["structures.generator.prototype"] is True and written["exploration.temperatures"] is True
    assert "structures.generator.rattle_stdev" not in written and "exploration.steps" not in written


def test_emt_engine_needs_no_pseudopotentials(tmp_path):
    config = load_config(write_input(tmp_path, elements=["Cu", "Au"], dft={"engine": "emt"}))
    assert config.dft.engine == "emt" and config.structures.generator.formula == "Cu"


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "input.yaml"
    path.write_text(
        "project: {name: x}\nelements: [Al]\nstructures: {generator: {prototype: fcc}}\nelements: [Cu]\n"
    )
    with pytest.raises(ConfigError, match=r"the key 'elements' appears twice .* line 4, column 1"):
        load_config(path)


def test_only_true_and_false_are_booleans_so_spin_off_means_off(tmp_path):
    path = tmp_path / "input.yaml"
    path.write_text(
        "project: {name: x}\nelements: [Cu]\nstructures: {generator: {prototype: fcc, cubic: false}}\n"
        "dft: {engine: emt, spin: off}\n"
    )
    config = load_config(path)
    assert config.dft.spin == "off" and config.structures.generator.cubic is False


def test_a_rattle_above_the_largest_rattle_names_both_keys(tmp_path):
    path = write_input(tmp_path, structures={"generator": {"prototype": "fcc", "rattle_stdev": 0.3}})
    with pytest.raises(ConfigError, match=r"structures\.generator.*max_rattle_stdev 0\.2 is below rattle_stdev 0\.3"):
        load_config(path)


def test_all_errors_of_a_file_come_in_one_message(tmp_path):
    path = write_input(tmp_path, training={"cutoff": -1, "mode": "deep"}, loop={"dft_budget": 0})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"Invalid input in {path}:"
    assert {line.split(" = ")[0] for line in lines[1:-1]} == {
        "  - training.cutoff",
        "  - training.mode",
        "  - loop.dft_budget",
    }


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of input.yaml, dotted ('structures.generator.rattled')."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        nested = [
            a
            for a in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys += _keys(nested[0], f"{prefix}{name}.")
    return keys


def test_the_input_reference_documents_every_key():
    reference = (ROOT / "docs" / "input-reference.md").read_text()
    undocumented = [key for key in _keys(MinimalConfig) if f"`{key.rsplit('.', 1)[-1]}`" not in reference]
    assert not undocumented, f"docs/input-reference.md misses {undocumented}"
