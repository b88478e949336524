"""Fuzzing `mlip-auto validate`: seeded mutants of the quickstart input and of a site file (wrong types,
huge and negative sizes, NaN/inf, deleted keys, unicode, YAML aliases, damaged text) must each end in
exit 0 or a named exit-2 message, within 10 s and 500 MB, never a traceback or an internal error.

Each mutant is validated in-process (milliseconds) and timed; the peak of Python's allocations
(tracemalloc, which slows the call) is measured for every mutant with an alias and a quarter of the rest. A handful of the heaviest kinds also run as real subprocesses,
whose peak resident memory is read from the kernel.
"""

import math
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from installed import mlip_auto_measured
from typer.testing import CliRunner

from autopipe.cli import app

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "examples" / "quickstart" / "input.yaml").read_text()
SITE = (ROOT / "site-configs" / "local.yaml").read_text()
N_MUTANTS = 240
TIME_LIMIT = 10.0  # seconds per validate
MEMORY_LIMIT = 500_000_000  # bytes

ODD_VALUES: list[Any] = [
    None, "", "x", "ü∂ƒ\u202e", "1e400", True, 0, -1, 1.5, -0.0, [], {}, [1, 2, 3], {"a": 1}, 10**30, -(10**30),
    1e300, 2**63, float("nan"), float("inf"), float("-inf"), "~", "null", "../../etc", "a" * 10_000,
]
HUGE_NUMBERS: list[Any] = [10**9, 10**12, 10**21, 1e9, 1e21, -5, 0, 2**63 - 1, 1e-9, -1e-9, 1e308]
ALIASES = [
    "  pw_input: &r {{control: *r}}\n",  # refers to itself
    "  pw_input:\n    electrons:\n" + "".join(
        f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 9)}]\n" for i in range(9)),
    "  pw_input: {{electrons: &e {{mixing_mode: plain}}, system: *e}}\n",  # a harmless alias
    "  <<: *undefined\n",
]


def leaves(data: Any, path: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) to a value inside nested dicts and lists, containers included."""
    found = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += leaves(value, (*path, index))
    return found


def replace(data: Any, path: tuple, value: Any, delete: bool = False) -> None:
    for part in path[:-1]:
        data = data[part]
    if delete:
        del data[path[-1]]
    else:
        data[path[-1]] = value


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10_000)


def mutant(text: str, rng: random.Random) -> str:
    """One mutation of a YAML document `text`, chosen by `rng`."""
    data = yaml.safe_load(text)
    paths = leaves(data)
    kind = rng.choice(["type", "size", "nonfinite", "delete", "unicode", "alias", "text", "text"])
    path = rng.choice(paths)
    if kind == "type":
        replace(data, path, rng.choice(ODD_VALUES))
    elif kind == "size":
        numeric = [p for p in paths if isinstance(_get(data, p), (int, float))] or [path]
        replace(data, rng.choice(numeric), rng.choice(HUGE_NUMBERS))
    elif kind == "nonfinite":
        replace(data, path, rng.choice([math.nan, math.inf, -math.inf, [math.nan, 1.0]]))
    elif kind == "delete":
        replace(data, path, None, delete=True)
    elif kind == "unicode":
        if isinstance(path[-1], str) and rng.random() < 0.5:
            value = _get(data, path)
            replace(data, path, None, delete=True)
            replace(data, (*path[:-1], path[-1].upper() + "\u0301 "), value)
        else:
            replace(data, path, rng.choice(["Ål", "日本語", "\u200b", "e\u0301", "🙂", "\t"]))
    elif kind == "alias":
        section = next((k for k in data if isinstance(data[k], dict)), None)
        if section is not None:
            lines = dump(data).splitlines(keepends=True)
            at = lines.index(f"{section}:\n") + 1
            return "".join(lines[:at]) + rng.choice(ALIASES).format() + "".join(lines[at:])
    else:
        lines = text.splitlines(keepends=True)
        at = rng.randrange(len(lines))
        action = rng.choice(["drop", "repeat", "garble", "indent"])
        if action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, lines[at])
        elif action == "garble":
            lines[at] = "".join(rng.choice("[]{}:,&*!%@`'\"\\ -?|>#\t") if rng.random() < 0.2 else c
                                for c in lines[at])
        else:
            lines[at] = "   " + lines[at]
        return "".join(lines)
    return dump(data)


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def mutants() -> list[tuple[int, str, str]]:
    """(seed, input text, site text): two in three mutate the input, the rest the site."""
    cases = []
    for seed in range(N_MUTANTS):
        rng = random.Random(seed)
        if seed % 3 == 2:
            cases.append((seed, QUICKSTART, mutant(SITE, rng)))
        else:
            cases.append((seed, mutant(QUICKSTART, rng), SITE))
    return cases


def check(result, seconds: float, peak: int, label: str) -> None:
    assert result.exit_code in (0, 2), f"{label}: exit {result.exit_code}\n{result.output}"
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), label
    assert "internal error" not in result.output and "Traceback" not in result.output, f"{label}\n{result.output}"
    assert seconds < TIME_LIMIT, f"{label}: {seconds:.1f} s"
    assert peak < MEMORY_LIMIT, f"{label}: {peak / 1e6:.0f} MB"


def test_validate_survives_every_mutant(tmp_path):
    runner = CliRunner()
    exits = []
    for seed, input_text, site_text in mutants():
        (tmp_path / "input.yaml").write_text(input_text)
        (tmp_path / "site.yaml").write_text(site_text)
        traced = seed % 4 == 0 or "&" in input_text + site_text  # tracing costs time: every alias, a sample
        if traced:
            tracemalloc.start()
        start = time.monotonic()
        result = runner.invoke(app, ["validate", str(tmp_path / "input.yaml"), "--site", str(tmp_path / "site.yaml")])
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        tracemalloc.stop()
        check(result, seconds, peak, f"mutant {seed}")
        exits.append(result.exit_code)
    assert exits.count(2) > N_MUTANTS / 2 and exits.count(0) > 10  # the mutants really test both ways


@pytest.mark.parametrize("index", [1, 0])
def test_the_heaviest_mutants_stay_within_limits_as_real_processes(tmp_path, index):
    """The alias bomb and the recursive alias, run as `mlip-auto validate` with the kernel's accounting."""
    text = QUICKSTART.replace("dft:\n", "dft:\n" + ALIASES[index].format(), 1)
    (tmp_path / "input.yaml").write_text(text)
    result, seconds, peak = mlip_auto_measured("validate", str(tmp_path / "input.yaml"))
    assert seconds < TIME_LIMIT
    assert peak < MEMORY_LIMIT
    assert result.returncode == 2 and "Traceback" not in result.stderr
