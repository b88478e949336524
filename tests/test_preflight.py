"""Pre-flight: a run that cannot work is refused before INIT (exit 2, nothing written), and `validate` says so.

Before, a typo in dft.command, pw.x missing from PATH, a backend not installed or a training split too
small to fit ended the project FAILED in generation 0.
"""

import sys
from pathlib import Path

from typer.testing import CliRunner

from autopipe.apps.train.dataset import validation_mask
from autopipe.apps.train.nonlinear import tensorpot_available
from autopipe.apps.train.settings import TrainingSettings
from autopipe.cli import app
from autopipe.config import load_config
from autopipe.workflow import init_task, structure_uuid

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "examples" / "quickstart" / "input.yaml").read_text()
SMALL = """
project: {{name: small}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, rattled: 3, strained: 2}}
dft: {{engine: emt}}
training: {{mode: linear, accuracy: fast, functions_per_element: 16{extra}}}
loop: {{seed: {seed}}}
assess: {{enabled: false}}
"""


def validate(tmp_path: Path, text: str, *args: str):
    (tmp_path / "input.yaml").write_text(text)
    return CliRunner().invoke(app, ["validate", str(tmp_path / "input.yaml"), *args])


def test_a_typo_in_the_dft_command_is_refused_by_validate_and_run(tmp_path):
    text = QUICKSTART.replace("command: pw.x", "command: pw-typo.x")
    result = validate(tmp_path, text)
    assert result.exit_code == 2 and "dft.command 'pw-typo.x'" in result.output
    run = CliRunner().invoke(app, ["run", str(tmp_path / "input.yaml"), "--site", "threads"])
    assert run.exit_code == 2 and "pw-typo.x" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_pw_x_missing_from_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    result = validate(tmp_path, QUICKSTART)
    assert result.exit_code == 2 and "'pw.x' is not found on PATH" in result.output


def test_the_site_dft_command_is_checked_and_named(tmp_path):
    site = (ROOT / "site-configs" / "threads.yaml").read_text() + "dft_command: srun-typo pw.x\n"
    (tmp_path / "site.yaml").write_text(site)
    result = validate(tmp_path, QUICKSTART, "--site", str(tmp_path / "site.yaml"))
    assert result.exit_code == 2 and "the site's dft_command" in result.output and "srun-typo" in result.output


def test_a_nonlinear_fit_needs_its_backend(tmp_path):
    text = QUICKSTART.replace("mode: linear", "mode: nonlinear\n  backend: tensorpot")
    result = validate(tmp_path, text)
    if tensorpot_available():  # installed (CI): the same input is accepted
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and "training.backend is 'tensorpot'" in result.output


def held_out(tmp_path: Path, seed: int) -> int:
    """How many of SMALL's 6 starting structures the default test_fraction holds out with this seed."""
    (tmp_path / "probe.yaml").write_text(SMALL.format(seed=seed, extra=""))
    config = load_config(tmp_path / "probe.yaml")
    key, _ = init_task(config)
    settings = TrainingSettings()
    return int(validation_mask([structure_uuid(key, i) for i in range(6)], settings.test_fraction,
                               settings.seed, starting=[True] * 6).sum())


def test_a_small_start_that_the_split_would_starve_is_refused_up_front(tmp_path):
    """6 cells of 4 atoms, 16 functions: holding out 3 leaves 12 atoms, fewer than the active set needs."""
    seed = next(s for s in range(500) if held_out(tmp_path, s) >= 3)
    result = validate(tmp_path, SMALL.format(seed=seed, extra=""))
    assert result.exit_code == 2, result.output
    assert "training.test_fraction = 0.1 holds out" in result.output
    assert "16 training.functions_per_element" in result.output
    run = CliRunner().invoke(app, ["run", str(tmp_path / "input.yaml"), "--site", "threads"])
    assert run.exit_code == 2 and not (tmp_path / "small").exists()
    assert validate(tmp_path, SMALL.format(seed=seed, extra=", test_fraction: 0")).exit_code == 0
    lucky = next(s for s in range(500) if held_out(tmp_path, s) == 1)  # never 0: the fixed validation set
    assert validate(tmp_path, SMALL.format(seed=lucky, extra="")).exit_code == 0



def test_a_project_path_with_a_blank_is_refused_where_workers_would_hang(tmp_path):
    (tmp_path / "input.yaml").write_text(SMALL.format(seed=0, extra=", test_fraction: 0"))
    workdir = str(tmp_path / "my project")
    local = CliRunner().invoke(app, ["validate", str(tmp_path / "input.yaml"), "--workdir", workdir])
    assert local.exit_code == 2 and "contains a blank" in local.output and "--site threads" in local.output
    threads = CliRunner().invoke(app, ["validate", str(tmp_path / "input.yaml"), "--workdir", workdir,
                                       "--site", "threads"])
    assert threads.exit_code == 0, threads.output


def test_a_project_path_with_a_newline_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "input.yaml").write_text(SMALL.format(seed=0, extra=", test_fraction: 0"))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "input.yaml"), "--site", "threads",
                                      "--workdir", str(tmp_path / "a\nb")])
    assert result.exit_code == 2 and "control character" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]
