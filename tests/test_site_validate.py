"""`mlip-auto validate input.yaml --site X`: the resources each kind of task gets, and broken site files
refused with one paragraph naming the key (exit 2, no traceback)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopipe.cli import app
from autopipe.executors import available_sites

INPUT = (
    "project: {name: demo}\nelements: [Al]\nstructures: {generator: {prototype: fcc}}\ndft: {engine: emt}\n"
    "training: {accuracy: fast, functions_per_element: 16}\n"  # enough training atoms for the basis
)

DFT_PROVIDER = 'provider: {type: slurm, partition: cpu, cores_per_node: 32, walltime: "02:00:00", max_blocks: 4}'
SITE = f"""\
name: mine
dft_command: srun --ntasks=16 pw.x -nk 2
executors:
  - label: dft
    type: htex
    max_workers_per_node: 2
    {DFT_PROVIDER}
  - label: gpu
    type: htex
    max_workers_per_node: 4
    available_accelerators: 4
    cores_per_worker: 8
    provider: {{type: slurm, cores_per_node: 32, gpus_per_node: 4, walltime: "01:00:00"}}
  - label: login
    type: threads
kinds: {{dft: dft, train: gpu, md: gpu, light: login}}
"""


def validate(tmp_path: Path, site: str, input_text: str = INPUT):
    (tmp_path / "input.yaml").write_text(input_text)
    path = site if site in available_sites() else str(tmp_path / "site.yaml")
    if path != site:
        Path(path).write_text(site)
    return CliRunner().invoke(app, ["validate", str(tmp_path / "input.yaml"), "--site", path])


def test_resources_per_kind_are_printed(tmp_path):
    result = validate(tmp_path, SITE)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()[:1]
            and line.split()[0] in ("dft", "train", "md", "light")}
    # kind, executor, where..., nodes/block, max blocks, workers/node, cores/node, walltime, ranks/DFT task
    assert rows["dft"][-6:] == ["1", "4", "2", "32", "02:00:00", "16"]
    assert rows["train"][-6:] == ["1", "1", "4", "32", "01:00:00", "-"]
    assert rows["light"][1:4] == ["login", "threads", "of"]


@pytest.mark.parametrize("name", ["perlmutter", "polaris", "frontier", "slurm-generic", "pbs-generic",
                                  "slurm-local", "local"])
def test_shipped_sites_validate(tmp_path, name):
    result = validate(tmp_path, name)
    assert result.exit_code == 0, result.output
    assert f"Site '{name}': resources per kind of task" in result.output


# (id, (old, new) edit of SITE, or a whole file; words the message must contain)
BROKEN = [
    ("misspelt-key", ("partition: cpu", "partiton: cpu"), "executors[0].provider.partiton: unknown key"),
    ("kind-without-executor", ("md: gpu", "md: cpus"), "kind 'md' is mapped to executor 'cpus'"),
    ("kind-missing", ("train: gpu, ", ""), "kinds.train: required key is missing"),
    ("labels-repeated", ("- label: gpu", "- label: dft"), "executor labels must be unique; repeated: dft"),
    ("walltime-format", ('"02:00:00"', '"2h"'), "executors[0].provider.walltime: must be HH:MM:SS"),
    ("walltime-zero", ('"02:00:00"', '"00:00:00"'), "executors[0].provider.walltime: must be HH:MM:SS above zero"),
    ("blocks-disordered", ("max_blocks: 4", "max_blocks: 4, min_blocks: 2"), "min_blocks <= init_blocks"),
    ("heartbeat", ("name: mine", "name: mine\nheartbeat_threshold: 10"), "heartbeat_threshold (10 s) must exceed"),
    ("provider-type", ("type: slurm, partition", "type: sge, partition"), "executors[0].provider.type: 'sge'"),
    ("launcher-option", ("max_blocks: 4}", "max_blocks: 4, launcher: {type: simple, overrides: -N1}}"),
     "'overrides' applies to the srun and mpiexec launchers"),
    ("more-ranks-than-cores", ("--ntasks=16", "--ntasks=64"),
     "dft_command: 64 MPI ranks per DFT task x 2 DFT workers per node of executor 'dft' = 128 ranks on 32 cores"),
    ("default-workers-times-ranks", ("    max_workers_per_node: 2\n", ""),
     "16 MPI ranks per DFT task x 32 DFT workers per node"),
    ("workers-exceed-cores", ("cores_per_worker: 8", "cores_per_worker: 16"),
     "executors[1].max_workers_per_node: 4 workers x 16 cores_per_worker need 64 cores, but a node has 32"),
    ("more-gpus-than-node", ("gpus_per_node: 4", "gpus_per_node: 2"),
     "executors[1].available_accelerators: 4 GPUs pinned per node, but provider.gpus_per_node is 2"),
    ("walltime-below-dft-timeout", ('"02:00:00"', '"00:20:00"'),
     "walltime of executor 'dft': 00:20:00 is shorter than one DFT attempt may take (dft.timeout = 3600 s"),
    ("interface-on-local", (DFT_PROVIDER, "interface: hsn0\n    provider: {type: local}"),
     "'interface' applies to slurm/pbspro providers"),
    ("not-yaml", "name: [\n", "is not valid YAML"),
]


@pytest.mark.parametrize(("edit", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_broken_site_is_refused_naming_the_key(tmp_path, edit, expected):
    if isinstance(edit, tuple):
        assert edit[0] in SITE
        text = SITE.replace(*edit, 1)
    else:
        text = edit
    result = validate(tmp_path, text)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert " ".join(expected.split()) in message
    assert "Traceback" not in result.output and "docs/sites.md" in message or "not valid YAML" in message
    assert not (tmp_path / "demo").exists()
