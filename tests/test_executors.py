"""Site YAML files become Parsl configs, and the local sites really run apps."""

import os
import sys
from pathlib import Path

import parsl
import pytest
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.launchers import MpiExecLauncher, SimpleLauncher, SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider, PBSProProvider, SlurmProvider

from autopipe.errors import ConfigError
from autopipe.executors import TASK_KINDS, available_sites, build_parsl_config, load_site
from autopipe.executors.loader import SITE_DIRS

REPO_SITES, PACKAGE_SITES = SITE_DIRS
VENV_BIN = str(Path(sys.executable).parent)

GOOD_SITE = """\
name: mine
executors:
  - label: cpu
    type: htex
    provider: {type: slurm, partition: regular, walltime: "01:00:00"}
  - label: quick
    type: threads
kinds: {dft: cpu, train: cpu, md: cpu, light: quick}
"""


def write_site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def run_apps(site_name: str, run_dir: Path) -> tuple[set[int], list[int]]:
    """Load the site into Parsl and run apps on its `md` executor: worker pids and three powers.

    The apps wrap importable functions (`os.getpid`, `pow`): the workers cannot import this test module.
    """
    site = load_site(site_name)
    parsl.load(build_parsl_config(site, run_dir))
    try:
        getpid = parsl.python_app(os.getpid, executors=[site.executor_for("md")])
        power = parsl.python_app(pow, executors=[site.executor_for("md")])
        pids = [getpid() for _ in range(4)]
        powers = [power(2, exponent) for exponent in range(3)]
        return {f.result(timeout=60) for f in pids}, [f.result(timeout=60) for f in powers]
    finally:
        parsl.dfk().cleanup()
        parsl.clear()


def test_builtin_sites_are_listed_and_shipped_inside_the_package():
    assert {"local", "threads", "perlmutter", "polaris", "frontier", "slurm-generic", "pbs-generic",
            "slurm-local"} <= set(available_sites())
    for path in PACKAGE_SITES.glob("*.yaml"):
        assert path.read_text() == (REPO_SITES / path.name).read_text(), (
            f"{path.name} differs from site-configs/"
        )
    assert {p.name for p in PACKAGE_SITES.glob("*.yaml")} == {p.name for p in REPO_SITES.glob("*.yaml")}


@pytest.mark.parametrize("name", available_sites())
def test_every_shipped_site_builds_a_parsl_config(name, tmp_path):
    site = load_site(name)
    config = build_parsl_config(site, tmp_path / "runinfo")
    labels = [executor.label for executor in config.executors]
    assert labels == [block.label for block in site.executors]
    assert {site.executor_for(kind) for kind in TASK_KINDS} <= set(labels)
    assert config.run_dir == str(tmp_path / "runinfo")
    assert config.strategy_period == site.strategy_period
    for executor in config.executors:
        if isinstance(executor, HighThroughputExecutor):
            assert executor.provider.worker_init.rstrip().endswith(f'export PATH={VENV_BIN}:"$PATH"')
            assert executor.heartbeat_threshold == site.heartbeat_threshold


def test_local_site_is_one_loopback_htex_for_every_kind(tmp_path):
    site = load_site("local")
    (executor,) = build_parsl_config(site, tmp_path).executors
    assert isinstance(executor, HighThroughputExecutor) and isinstance(executor.provider, LocalProvider)
    assert isinstance(executor.provider.launcher, SingleNodeLauncher)
    assert executor.address == "127.0.0.1"
    assert executor.max_workers_per_node == 2
    assert site.strategy_period == 0.5
    assert {site.executor_for(kind) for kind in TASK_KINDS} == {executor.label}


def test_hpc_examples_map_kinds_to_scheduler_executors(tmp_path):
    perlmutter = load_site("perlmutter")
    executors = {e.label: e for e in build_parsl_config(perlmutter, tmp_path).executors}
    dft, train = executors[perlmutter.executor_for("dft")], executors[perlmutter.executor_for("train")]
    assert isinstance(dft.provider, SlurmProvider) and dft.provider.constraint == "cpu"
    assert isinstance(dft.provider.launcher, SimpleLauncher)
    assert isinstance(train.provider.launcher, SrunLauncher) and train.provider.constraint == "gpu"
    assert perlmutter.dft_command.startswith("srun ") and perlmutter.env["OMP_NUM_THREADS"] == "1"
    assert isinstance(executors[perlmutter.executor_for("light")], ThreadPoolExecutor)

    polaris = load_site("polaris")
    executors = {e.label: e for e in build_parsl_config(polaris, tmp_path).executors}
    train = executors[polaris.executor_for("train")]
    assert isinstance(train.provider, PBSProProvider)
    assert isinstance(train.provider.launcher, MpiExecLauncher)
    assert train.provider.launcher.bind_cmd == "--cpu-bind"
    assert "module load conda" in train.provider.worker_init


def test_site_given_by_path_keeps_its_own_worker_init_before_the_venv(tmp_path):
    text = GOOD_SITE.replace('walltime: "01:00:00"', 'walltime: "01:00:00", worker_init: module load qe')
    site = load_site(str(write_site(tmp_path, text)))
    cpu = build_parsl_config(site, tmp_path).executors[0]
    assert isinstance(cpu.provider.launcher, SrunLauncher)  # the slurm default
    assert cpu.provider.walltime == "01:00:00"
    assert cpu.provider.worker_init.splitlines()[:2] == ["module load qe", f'export PATH={VENV_BIN}:"$PATH"']
    assert site.executor_for("light") == "quick"
    with pytest.raises(ValueError, match="unknown task kind 'gpu'"):
        site.executor_for("gpu")


def test_local_htex_runs_apps_in_worker_processes_without_the_venv_on_path(tmp_path, monkeypatch):
    """A user may call .venv/bin/mlip-auto without activating the venv: interchange and workers must start."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    pids, powers = run_apps("local", tmp_path / "runinfo")
    assert powers == [1, 2, 4]
    assert os.getpid() not in pids
    assert (tmp_path / "runinfo" / "000" / "parsl.log").is_file()


def test_threads_site_runs_apps_in_this_process(tmp_path):
    pids, powers = run_apps("threads", tmp_path / "runinfo")
    assert (pids, powers) == ({os.getpid()}, [1, 2, 4])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("partition: regular", "partion: regular"), "executors[0].provider.partion: unknown key"),
        (("light: quick", "light: gpu"), "kind 'light' is mapped to executor 'gpu'"),
        (("kinds: {dft: cpu, ", "kinds: {"), "kinds.dft: required key is missing"),
        (("type: threads", "type: thread"), "executors[1].type: 'thread' is not one of 'htex', 'threads'"),
        (('walltime: "01:00:00"', 'walltime: "1h"'), "executors[0].provider.walltime: must be HH:MM:SS"),
        (("type: slurm,", "type: slurm, launcher: mpirun,"), "executors[0].provider.launcher.type"),
        (("- label: quick", "- label: cpu"), "executor labels must be unique; repeated: cpu"),
        (("name: mine", "name: mine\nheartbeat_period: 300"), "heartbeat_threshold (120 s) must exceed"),
    ],
)
def test_bad_site_file_is_refused_naming_the_key(tmp_path, change, expected):
    old, new = change
    assert old in GOOD_SITE
    path = write_site(tmp_path, GOOD_SITE.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_site(str(path))
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_key_error_lists_the_allowed_keys(tmp_path):
    path = write_site(tmp_path, GOOD_SITE.replace("partition: regular", "partion: regular"))
    with pytest.raises(ConfigError, match=r"allowed here: .*\bpartition\b.*\bqos\b"):
        load_site(str(path))


def test_unknown_site_name_lists_the_available_sites():
    with pytest.raises(ConfigError, match=r"Unknown site 'nersc'\. Available sites: frontier, local, .*threads"):
        load_site("nersc")


def test_missing_file_and_broken_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_site(str(tmp_path / "nowhere.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML.*line 2"):
        load_site(str(write_site(tmp_path, "name: [\n")))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_site(str(write_site(tmp_path, "- local\n")))
