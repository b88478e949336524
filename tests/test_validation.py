"""One reader for every user YAML file: safe loading, and pydantic errors as key paths the user wrote."""

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from autopipe.errors import ConfigError
from autopipe.validation import Wording, load_model, read_yaml

WORDING = Wording(reference="docs/example.md")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Disk(Strict):
    kind: Literal["disk"]
    size: PositiveInt


class Tape(Strict):
    kind: Literal["tape"]
    label: str


class Store(Strict):
    name: str
    backends: list[Annotated[Disk | Tape, Field(discriminator="kind")]] = Field(min_length=1)
    mode: Literal["auto"] | dict[str, float] = "auto"
    limits: dict[str, PositiveInt] = {}
    spare: Disk | None = None


def refusal(tmp_path: Path, text: str, wording: Wording = WORDING) -> list[str]:
    path = tmp_path / "store.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_model(path, Store, wording)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"Invalid input in {path}:"
    assert lines[-1] == "Every key is described in docs/example.md."
    return lines[1:-1]


def test_valid_file_becomes_the_model(tmp_path):
    path = tmp_path / "store.yaml"
    path.write_text("name: s\nbackends: [{kind: tape, label: off}]\nmode: {a: 1.5}\n")
    store = load_model(path, Store, WORDING)
    assert store.backends == [Tape(kind="tape", label="off")]  # 'off' stays a word, not False
    assert store.mode == {"a": 1.5}


# (id, file text, the lines of the refusal between its head and its foot)
REFUSED = [
    (
        "discriminated-union-tag-skipped",
        "name: s\nbackends: [{kind: disk, size: 0}, {kind: tape, label: x, size: 2}]\n",
        [
            "  - backends[0].size = 0: must be greater than 0",
            "  - backends[1].size: unknown key; allowed keys in backends[1]: kind, label",
        ],
    ),
    (
        "bad-or-missing-tag-is-its-own-key",
        "name: s\nbackends: [{kind: cloud}, {size: 3}]\n",
        [
            "  - backends[0].kind: 'cloud' is not one of 'disk', 'tape'",
            "  - backends[1].kind: required key is missing",
        ],
    ),
    (
        "plain-union-names-skipped-failures-share-a-line",
        "name: s\nbackends: [{kind: disk, size: 1}]\nmode: manual\nlimits: {cpu: -1}\n",
        [
            "  - mode = 'manual': must be 'auto', or must be a valid dictionary",
            "  - limits.cpu = -1: must be greater than 0",
        ],
    ),
    (
        "sections-lists-missing-keys",
        "backends: []\nspare: big\n",
        [
            "  - name: required key is missing",
            "  - backends = []: must have at least 1 item(s)",
            "  - spare = 'big': must be a section with keys kind, size",
        ],
    ),
]


@pytest.mark.parametrize(("text", "lines"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_bad_key_gets_one_line_with_its_path_value_and_what_is_allowed(tmp_path, text, lines):
    assert refusal(tmp_path, text) == lines


def test_wording_changes_only_the_phrasing(tmp_path):
    site_like = Wording(
        reference="docs/example.md",
        value="{key}: {problem} (got {value})",
        unknown_key="unknown key (allowed here: {allowed})",
    )
    text = "name: s\nbackends: [{kind: disk, size: 0, label: x}]\n"
    assert refusal(tmp_path, text, site_like) == [
        "  - backends[0].size: must be greater than 0 (got 0)",
        "  - backends[0].label: unknown key (allowed here: kind, size)",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: s\nname: t\n",
            r"store\.yaml is not valid YAML: the key 'name' appears twice .* line 2, column 1",
        ),
        ("name: [\n", r"not valid YAML: .* at line 2, column 1\.$"),
        ("- s\n", r"top level must be a mapping with the keys name, backends, mode, limits, spare, not list"),
        ("", "not an empty document"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
    ],
    ids=["duplicate-key", "broken", "list", "empty", "python-tag"],
)
def test_unreadable_files_are_config_errors(tmp_path, text, message):
    path = tmp_path / "store.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_model(path, Store, WORDING)


def test_missing_file_names_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"The input file {tmp_path / 'none.yaml'} does not exist"):
        read_yaml(Path("none.yaml"))
