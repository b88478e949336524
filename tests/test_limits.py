"""Inputs that would exhaust the machine, and bad files that used to crash, end in a named exit-2 message.

Each case is the quickstart input (or the local site) with one value changed, checked through the real
`mlip-auto validate` (in-process, so each check costs milliseconds; one subprocess measures memory).
"""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write
from installed import mlip_auto_measured
from typer.testing import CliRunner

from autopipe.cli import app
from autopipe.dispatch import read_result
from autopipe.validation import MAX_YAML_VALUES

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "examples" / "quickstart" / "input.yaml").read_text()
LOCAL_SITE = (ROOT / "site-configs" / "local.yaml").read_text()

#: The 588-byte alias bomb of the issue: nine levels of nine aliases, 9**9 values once expanded.
BOMB = "".join(
    f"      l{level}: &l{level} [{', '.join([f'*l{level - 1}' if level else 'lol'] * 9)}]\n" for level in range(9)
)


def validate(tmp_path: Path, text: str, *args: str, site: str | None = None):
    """`mlip-auto validate` of `text` (and a site file) in tmp_path; returns the click result."""
    (tmp_path / "input.yaml").write_text(text)
    site_args = []
    if site is not None:
        (tmp_path / "site.yaml").write_text(site)
        site_args = ["--site", str(tmp_path / "site.yaml")]
    return CliRunner().invoke(app, ["validate", str(tmp_path / "input.yaml"), *site_args, *args])


def refused(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "internal error" not in result.output and "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_an_alias_bomb_is_refused_at_once_and_in_little_memory(tmp_path):
    text = QUICKSTART.replace("dft:\n", "dft:\n  pw_input:\n    electrons:\n" + BOMB, 1)
    assert len(BOMB) < 600
    (tmp_path / "input.yaml").write_text(text)
    result, seconds, peak = mlip_auto_measured("validate", str(tmp_path / "input.yaml"))
    assert seconds < 10
    assert peak < 500_000_000
    assert result.returncode == 2 and f"more than {MAX_YAML_VALUES:,} values" in result.stderr


def test_an_alias_to_its_own_section_is_refused(tmp_path):
    refused(validate(tmp_path, QUICKSTART.replace("dft:\n", "dft:\n  pw_input: &loop {control: *loop}\n", 1)),
            "refers to a section that contains it")


def with_value(text: str, key: str, value: str) -> str:
    """`text` with the first `key:` line set to `value` (the quickstart's own numbers may change)."""
    return re.sub(rf"^(\s*){key}:.*$", rf"\g<1>{key}: {value}", text, count=1, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("rattled", "1000000000", "starting structures: 1,000,000,0"),
        ("supercell", "[1000, 1000, 1000]", "atoms per structure: 4,000,000,000"),
        ("steps", "1.0e+12", "MD steps per walker"),
        ("steps", "300\n  walkers_per_temperature: 1.0e+9", "MD walkers per generation"),
        ("max_generations", "1.0e+15", "generations: 1,000,000,000,000,000 is more"),
        ("dft_budget", "10", "starting structures, whose labels count against it"),
        ("assess", "\n  vacancy_supercell: [100, 100, 100]", "atoms per assessment cell"),
    ],
    ids=["rattled", "supercell", "steps", "walkers", "generations", "budget-below-init", "assessment-cell"],
)
def test_sizes_beyond_the_limits_are_refused_before_anything_is_built(tmp_path, key, value, phrase):
    start = time.monotonic()
    refused(validate(tmp_path, with_value(QUICKSTART, key, value)), "the run would be too large", phrase)
    assert time.monotonic() - start < 10


def test_validate_prints_the_cost_estimate(tmp_path):
    result = validate(tmp_path, QUICKSTART)
    assert result.exit_code == 0, result.output
    assert "Cost estimate" in result.output and "MD steps per walker" in result.output


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("timestep_fs: 2.0", "timestep_fs: .inf", "exploration.timestep_fs"),
        ("temperatures: [300, 600]", "temperatures: [300, .nan]", "exploration.temperatures[1]"),
        ("timeout: 600", "timeout: .inf", "dft.timeout"),
        ("dft:\n", "dft:\n  pw_input: {electrons: {mixing_fixed_ns: .nan}}\n", "dft.pw_input.electrons.mixing_fixed_ns"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path, old, new, key):
    refused(validate(tmp_path, QUICKSTART.replace(old, new, 1)), key)


def test_non_finite_coordinates_in_a_structure_file_are_refused(tmp_path):
    atoms = bulk("Al", cubic=True)
    atoms.positions[2, 1] = np.nan
    write(tmp_path / "start.extxyz", [bulk("Al", cubic=True), atoms])
    text = QUICKSTART.replace("structures:\n", "structures:\n  files: [start.extxyz]\n", 1)
    refused(validate(tmp_path, text), "structures.files[0]", "frame 1", "not finite")


def test_a_negative_seed_is_refused(tmp_path):
    refused(validate(tmp_path, QUICKSTART.replace("seed: 0", "seed: -1")), "loop.seed")


def test_a_site_asking_for_billions_of_workers_is_refused(tmp_path):
    site = LOCAL_SITE.replace("cores_per_worker: 1", "cores_per_worker: 1e-9")
    refused(validate(tmp_path, QUICKSTART, site=site), "executors[0].cores_per_worker", "at least 0.1")


def test_a_damaged_result_file_counts_as_no_result(tmp_path):
    for damage in (b"\x00\xff garbage", b'{"value": 1', b"[1, 2]", b'{"unexpected": true}'):
        (tmp_path / "result.json").write_bytes(damage)
        assert read_result(tmp_path) is None
    (tmp_path / "result.json").write_text(json.dumps({"value": {"energy": 1.0}, "wall_time": 0.1}))
    assert read_result(tmp_path) == {"value": {"energy": 1.0}, "wall_time": 0.1}
