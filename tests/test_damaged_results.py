"""No project is poisoned: labels a project cannot fit are refused before anything is written."""

from pathlib import Path

import pytest
from installed import mlip_auto
from test_project_safety import INPUT as SAFETY_INPUT

from autopipe.config import load_config
from autopipe.events import EventStore, fold
from autopipe.import_labels import read_labels

#: test_project_safety's project, with the assessment on (E(V) and the MD check, whose snapshots get DFT).
INPUT = SAFETY_INPUT.replace("assess: {enabled: false}\n", """assess:
  properties: [eos, md_forces]
  max_rounds: 0
  md: {supercell: [2, 2, 2], steps: 60, snapshots: 1, temperature: 300}
""")


def run(input_path: Path, *args: str):
    return mlip_auto("run", str(input_path), "--site", "threads", *args)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, int]:
    """The EMT project run to DONE and the exit code of that run."""
    folder = tmp_path_factory.mktemp("done")
    (folder / "input.yaml").write_text(INPUT)
    result = run(folder / "input.yaml")
    assert result.returncode in (0, 3), result.stderr
    return folder / "emt_al", result.returncode


def events(project: Path) -> list:
    with EventStore.open_existing(project / "events.sqlite") as store:
        return store.events()


@pytest.fixture(scope="module")
def copper(tmp_path_factory) -> Path:
    """A finished EMT project of Cu (no assessment)."""
    folder = tmp_path_factory.mktemp("copper")
    text = SAFETY_INPUT.replace("elements: [Al]", "elements: [Cu]").replace("name: emt_al", "name: emt_cu")
    (folder / "input.yaml").write_text(text)
    assert run(folder / "input.yaml").returncode == 0
    return folder / "emt_cu"


def test_labels_of_an_element_the_project_lacks_are_refused_before_anything_is_written(copper, tmp_path):
    (tmp_path / "input.yaml").write_text(INPUT)
    fresh = tmp_path / "fresh"
    result = run(tmp_path / "input.yaml", "--from-labels", str(copper), "--workdir", str(fresh))
    assert result.returncode == 2, result.stderr
    assert "hold Cu" in result.stderr and "Traceback" not in result.stderr
    assert not fresh.exists()
    by_default = run(tmp_path / "input.yaml", "--from-labels", str(copper))
    assert by_default.returncode == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["input.yaml"]


def test_labels_of_a_subset_of_the_elements_are_accepted(finished, tmp_path):
    alloy = INPUT.replace("elements: [Al]", "elements: [Al, Cu]").replace(
        "cubic: true,", "cubic: true, occupation: {Al: 0.5, Cu: 0.5},")
    (tmp_path / "input.yaml").write_text(alloy)
    labels = read_labels(finished[0], load_config(tmp_path / "input.yaml"))
    assert {label.key for label in labels} == {task.key for task in fold(events(finished[0])).labels_done()}
