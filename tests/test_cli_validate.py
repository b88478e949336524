"""`mlip-auto validate` and `mlip-auto init` through the real CLI: bad input exits 2, names the key, writes nothing."""

import subprocess
from pathlib import Path

import pytest
from ase.build import bulk, molecule
from ase.io import write
from installed import MLIP_AUTO
from typer.testing import CliRunner

import autopipe.cli
from autopipe.cli import app
from autopipe.errors import RunError

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "input.yaml"

HEAD = "project: {name: demo}\nelements: [Al]\n"
GENERATOR = "structures:\n  generator: {prototype: fcc, rattled: 1, strained: 1}\n"
PSEUDO = "dft:\n  pseudopotentials: {Al: Al.pz-vbc.UPF}\n"
VALID = HEAD + GENERATOR + PSEUDO


def snapshot(directory: Path) -> dict[str, float]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*")}


def invoke(tmp_path: Path, monkeypatch, *args: str):
    """Run the CLI inside `tmp_path` and check that nothing there was created or changed."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, list(args))
    assert snapshot(tmp_path) == before, "the command wrote into the directory"
    return result


# (id, input.yaml text, key or phrase the message must name)
BROKEN = [
    (
        "unknown-top-level-key",
        VALID + "loops: {max_generations: 2}\n",
        "loops: unknown key; allowed keys at the top",
    ),
    (
        "unknown-nested-key",
        HEAD + GENERATOR + "dft: {ecut: 30}\n",
        "dft.ecut: unknown key; allowed keys in dft",
    ),
    (
        "unknown-generator-key",
        HEAD + "structures: {generator: {prototype: fcc, size: 2}}\n" + PSEUDO,
        "structures.generator.size: unknown key; allowed keys in structures.generator: prototype",
    ),
    ("wrong-type", VALID + "exploration: {steps: many}\n", "exploration.steps = 'many'"),
    ("section-not-a-mapping", VALID + "training: linear\n", "training = 'linear': must be a section"),
    (
        "missing-pseudopotential",
        "project: {name: demo}\nelements: [Al, Cu]\n" + GENERATOR + PSEUDO,
        "dft.pseudopotentials.Cu",
    ),
    (
        "pseudopotential-file-missing",
        HEAD + GENERATOR + "dft: {pseudopotentials: {Al: Al.pbe-nope.UPF}}\n",
        "dft.pseudopotentials.Al: the file 'Al.pbe-nope.UPF' does not exist",
    ),
    (
        "pseudopotential-not-upf",
        HEAD + GENERATOR + "dft: {pseudo_dir: ., pseudopotentials: {Al: input.yaml}}\n",
        "dft.pseudopotentials.Al",
    ),
    (
        "pseudo-dir-missing",
        HEAD + GENERATOR + "dft: {pseudo_dir: pp, pseudopotentials: {Al: Al.pz-vbc.UPF}}\n",
        "dft.pseudo_dir",
    ),
    (
        "unknown-element",
        "project: {name: demo}\nelements: [Al, Qq]\n" + GENERATOR + PSEUDO,
        "elements[1] = 'Qq': not a chemical symbol",
    ),
    (
        "negative-temperature",
        VALID + "exploration: {temperatures: [300, -50]}\n",
        "exploration.temperatures[1] = -50: must be greater than 0",
    ),
    ("empty-elements", "project: {name: demo}\nelements: []\n" + GENERATOR + PSEUDO, "elements = []"),
    (
        "duplicated-element",
        "project: {name: demo}\nelements: [Al, Al]\n" + GENERATOR + PSEUDO,
        "Al listed more than once",
    ),
    ("malformed-yaml", "project: {name: demo\nelements: [Al]\n", "not valid YAML"),
    ("duplicated-key", VALID + "elements: [Cu]\n", "the key 'elements' appears twice"),
    (
        "missing-structure-file",
        HEAD + "structures: {files: [start.xyz]}\n" + PSEUDO,
        "structures.files[0]: the structure file",
    ),
    (
        "gamma-halt-below-select",
        VALID + "exploration: {gamma_select: 10, gamma_halt: 8}\n",
        "gamma_halt (8.0) must be larger than gamma_select (10.0)",
    ),
    (
        "bad-accuracy",
        HEAD + GENERATOR + "dft: {accuracy: ultra, pseudopotentials: {Al: Al.pz-vbc.UPF}}\n",
        "dft.accuracy = 'ultra': must be 'fast', 'standard' or 'precise'",
    ),
    ("negative-cutoff", VALID + "training: {cutoff: -5}\n", "training.cutoff = -5"),
    ("zero-max-generations", VALID + "loop: {max_generations: 0}\n", "loop.max_generations = 0"),
    (
        "bad-prototype",
        HEAD + "structures: {generator: {prototype: fcx}}\n" + PSEUDO,
        "structures.generator.prototype = 'fcx': must be 'sc', 'fcc'",
    ),
    ("test-fraction-too-large", VALID + "training: {test_fraction: 1.5}\n", "training.test_fraction = 1.5"),
    (
        "emt-unsupported-element",
        "project: {name: demo}\nelements: [Fe]\nstructures: {generator: {prototype: bcc}}\ndft: {engine: emt}\n",
        "dft.engine 'emt' has no parameters for Fe",
    ),
    ("top-level-not-a-mapping", "- project\n- elements\n", "the top level must be a mapping"),
    ("no-structures", HEAD + "structures: {files: []}\n" + PSEUDO, "structures: give `files`, a `generator`"),
    ("project-missing", "elements: [Al]\n" + GENERATOR + PSEUDO, "project: required key is missing"),
    ("bad-project-name", VALID.replace("name: demo", "name: my project"), "project.name = 'my project'"),
    (
        "formula-outside-elements",
        HEAD + "structures: {generator: {prototype: rocksalt, formula: NaCl, a: 5.6}}\n" + PSEUDO,
        "structures.generator.formula 'NaCl' contains Cl, Na, not in elements",
    ),
    (
        "no-reference-lattice-constant",
        HEAD + "structures: {generator: {prototype: bcc}}\n" + PSEUDO,
        "structures.generator.a: ASE has no reference lattice constant",
    ),
    (
        "negative-ecutwfc",
        HEAD + GENERATOR + "dft: {ecutwfc: -30, pseudopotentials: {Al: Al.pz-vbc.UPF}}\n",
        "dft.ecutwfc = -30",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_broken_input_exits_2_naming_the_key_and_writes_nothing(tmp_path, monkeypatch, text, expected):
    (tmp_path / "input.yaml").write_text(text)
    result = invoke(tmp_path, monkeypatch, "validate", "input.yaml")
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_missing_input_file_names_the_path(tmp_path, monkeypatch):
    result = invoke(tmp_path, monkeypatch, "validate", "nothere.yaml")
    assert result.exit_code == 2
    assert f"The input file {tmp_path / 'nothere.yaml'} does not exist" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("frames", "expected"),
    [(bulk("Cu"), "frame 0 of"), (molecule("CH4"), "frame 0 of")],
    ids=["foreign-element", "no-cell"],
)
def test_unusable_structure_file_exits_2(tmp_path, monkeypatch, frames, expected):
    write(tmp_path / "start.xyz", frames)
    (tmp_path / "input.yaml").write_text(
        "project: {name: demo}\nelements: [Al, C, H]\nstructures: {files: [start.xyz]}\ndft: {engine: emt}\n"
    )
    result = invoke(tmp_path, monkeypatch, "validate", "input.yaml")
    assert result.exit_code == 2
    assert "structures.files[0]" in result.stderr and expected in result.stderr


def test_valid_input_prints_a_summary_and_writes_nothing(tmp_path, monkeypatch):
    (tmp_path / "input.yaml").write_text(VALID + "training: {functions_per_element: 8}\n")
    result = invoke(tmp_path, monkeypatch, "validate", "input.yaml", "--workdir", "runs/demo")
    assert result.exit_code == 0, result.output
    for expected in (
        "Al.pz-vbc.UPF",
        "3: 3 x Al4",
        "linear",
        "6 generations",
        str(tmp_path / "runs" / "demo"),
        "input.yaml is valid.",
    ):
        assert expected in result.stdout
    assert not (tmp_path / "runs").exists()


def test_quickstart_example_validates(tmp_path, monkeypatch):
    project = QUICKSTART.parent / "al_quickstart"
    existed = project.exists()  # the demo may have run here already
    result = invoke(tmp_path, monkeypatch, "validate", str(QUICKSTART))
    assert result.exit_code == 0, result.output
    assert "Al.pz-vbc.UPF" in result.stdout and "300, 600 K" in result.stdout
    assert project.exists() == existed


def test_validate_shows_the_dft_parameters_chosen_per_structure(tmp_path, monkeypatch):
    """Al.pz-vbc is norm-conserving with no suggested cutoff: 30 Ry x 0.8 (fast), ecutrho 4x; the quickstart's
    k-spacing of 0.25/A on the 4.05 A cubic cell gives 7x7x7 (docs/dft.md)."""
    result = invoke(tmp_path, monkeypatch, "validate", str(QUICKSTART))
    assert result.exit_code == 0, result.output
    assert "DFT parameters chosen per starting structure" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "fcc-Al" in line]
    assert len(rows) == 20  # 1 ideal, 8 rattled, 4 strained, 7 scaled
    assert all("24 / 96" in row and "mv 0.0275" in row for row in rows)
    assert sum("7x7x7" in row for row in rows) == 19  # the most expanded scaled copy gets 6x6x6


def test_init_writes_an_input_that_validates_and_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    written = (tmp_path / "input.yaml").read_text()
    assert "# " in written and "elements:" in written  # commented
    assert runner.invoke(app, ["validate", "input.yaml"]).exit_code == 0

    (tmp_path / "input.yaml").write_text("mine")
    refused = runner.invoke(app, ["init"])
    assert refused.exit_code == 2
    assert "refusing to write input.yaml: it already exists; pass --force" in refused.stderr
    assert (tmp_path / "input.yaml").read_text() == "mine"

    assert runner.invoke(app, ["init", "input.yaml", "--force"]).exit_code == 0
    assert (tmp_path / "input.yaml").read_text() == written


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    (tmp_path / "input.yaml").write_text(VALID + "loop: {seed: x}\n")
    result = invoke(tmp_path, monkeypatch, "--debug", "validate", "input.yaml")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "loop.seed = 'x'" in result.stderr


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (RunError("pw.x vanished"), 1, "Error: pw.x vanished"),
        (KeyboardInterrupt(), 130, "Interrupted"),
        (ZeroDivisionError("oops"), 1, "Unexpected internal error: ZeroDivisionError: oops"),
    ],
    ids=["run-error", "ctrl-c", "bug"],
)
def test_error_boundary_maps_exceptions_to_exit_codes(tmp_path, monkeypatch, raised, code, message):
    def explode(*_args):
        raise raised

    monkeypatch.setattr(autopipe.cli, "load_config", explode)
    result = invoke(tmp_path, monkeypatch, "validate", "input.yaml")
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output


def test_installed_console_script_reports_bad_input_on_stderr(tmp_path):
    (tmp_path / "input.yaml").write_text(VALID + "loop: {max_generations: 0}\n")
    done = subprocess.run(
        [MLIP_AUTO, "validate", "input.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "loop.max_generations = 0" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_usage_errors_exit_2(tmp_path, monkeypatch):
    assert invoke(tmp_path, monkeypatch, "validate").exit_code == 2
    assert invoke(tmp_path, monkeypatch, "no-such-command").exit_code == 2
