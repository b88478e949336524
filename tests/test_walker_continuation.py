"""`exploration.continue_walkers`: each slot of the schedule continues its predecessor's trajectory from the
last frame it trusted, in a real EMT run (the default starts every walker from the next labelled structure)."""

import subprocess

import pandas as pd
import pytest
from installed import MLIP_AUTO

from autopipe.apps.explore.candidates import read_candidates
from autopipe.events import EventStore, fold

INPUT = """
project: {{name: emt_continue}}
elements: [Al]
structures:
  generator: {{prototype: fcc, cubic: true, supercell: [2, 1, 1], rattled: 3, strained: 1}}
dft: {{engine: emt}}
training: {{mode: linear, accuracy: fast, functions_per_element: 12, test_fraction: 0.0}}
exploration: {{temperatures: [300, 600], ensembles: [nvt, npt], steps: 60, check_interval: 10,
              gamma_select: 4.0, gamma_halt: 40.0, continue_walkers: {continue_walkers}}}
selection: {{max_per_generation: 2}}
loop: {{max_generations: 3, dft_budget: 20, seed: 2}}
assess: {{enabled: false}}
"""


def run(tmp_path, continue_walkers: bool):
    (tmp_path / "input.yaml").write_text(INPUT.format(continue_walkers=str(continue_walkers).lower()))
    result = subprocess.run([MLIP_AUTO, "run", str(tmp_path / "input.yaml"), "--site", "threads"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    root = tmp_path / "emt_continue"
    with EventStore.open_existing(root / "events.sqlite") as store:
        return root, fold(store.events())


def walkers(state, generation):
    """The generation's walker tasks in schedule order (their labels start `walker <slot> at`)."""
    tasks = [t for t in state.tasks.values() if t.kind == "explore" and t.generation == generation]
    return sorted(tasks, key=lambda t: int(t.label.split()[1]))


@pytest.mark.parametrize("continue_walkers", [True, False])
def test_walkers_continue_from_their_predecessors_last_trusted_frame(tmp_path, continue_walkers):
    root, state = run(tmp_path, continue_walkers)
    assert len(state.explorations) >= 2
    for generation in sorted(state.explorations)[1:]:
        previous = state.explorations[generation - 1]["continuations"]
        assert len(previous) == len(walkers(state, generation - 1)) == 4  # per slot, in schedule order
        for slot, (task, path) in enumerate(zip(walkers(state, generation), previous, strict=True)):
            if not continue_walkers or path is None:
                assert " of generation " not in task.label  # from the next labelled structure
                continue
            [frame] = read_candidates(root / path)
            assert frame.info["max_gamma"] < 4.0  # trusted by the potential that ran it
            assert task.label.endswith(f"from walker {slot} of generation {generation - 1}, "
                                       f"step {frame.info['step']}")
            first = pd.read_csv((root / task.result["candidates"]).parent / "gamma.csv").iloc[0]
            # the continued walker starts in its predecessor's last trusted cell (NPT: a cell of its own)
            assert first["volume_per_atom"] == pytest.approx(frame.get_volume() / len(frame), abs=1e-4)
    continued = [t for g in sorted(state.explorations)[1:] for t in walkers(state, g) if " of generation " in t.label]
    assert bool(continued) == continue_walkers
