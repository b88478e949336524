"""Labels with the real pw.x: numbers a user would check, recoveries, failures recorded, refusals before pw.x.

Cheap settings throughout (ecutwfc 20-25 Ry, coarse k-points); each label takes about a second or less.
"""

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule

from autopipe.apps.dft import choose_parameters, label
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.structures import atoms_to_dict
from autopipe.errors import DFTError

pytestmark = pytest.mark.qe

PSEUDOS = {"Al": "Al.pz-vbc.UPF", "Si": "Si.pz-vbc.UPF", "Fe": "Fe.pbe-nd-rrkjus.UPF"}
CHEAP = {"ecutwfc": 20, "kspacing": 0.5}


def settings(**overrides):
    return DFTSettings(**{"pseudopotentials": PSEUDOS, **CHEAP, **overrides}).model_dump(mode="json")


def run(atoms, workdir, **overrides):
    return label(atoms_to_dict(atoms), settings(**overrides), str(workdir))


def rattled(atoms, amplitude, seed):
    atoms = atoms.copy()
    atoms.rattle(amplitude, seed=seed)
    return atoms


def assert_trustworthy(result, atoms):
    assert result["status"] == "ok" and result["converged"] and result["failure"] is None
    assert result["engine"] == "qe" and result["code_version"].startswith("pw.x 6.")
    assert np.isfinite(result["energy"])
    forces = np.array(result["forces"])
    assert forces.shape == (len(atoms), 3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-2  # Newton's third law up to the SCF noise
    assert len(result["stress"]) == 6
    assert result["scf_accuracy"] < result["parameters"]["conv_thr"]
    assert result["wall_time"] > 0 and result["scf_steps"] >= 1
    for element in set(atoms.get_chemical_symbols()):
        assert result["pseudopotentials"][element]["file"] == PSEUDOS[element]
        assert len(result["pseudopotentials"][element]["md5"]) == 32


def test_fcc_al_one_atom_matches_the_rule_table_and_is_stored(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05)
    atoms.set_array("force_mask", np.ones(1))  # a training-only array rides along and is ignored
    result = run(atoms, tmp_path)
    assert_trustworthy(result, atoms)
    params = result["parameters"]
    expected = [math.ceil(2 * math.pi * np.linalg.norm(b) / 0.5) for b in atoms.cell.reciprocal()]
    assert params["kpts"] == expected and params["koffset"] == [0, 0, 0]
    assert (params["ecutwfc"], params["ecutrho"], params["nspin"]) == (20, 80, 1)  # norm-conserving: 4x
    assert (params["smearing"], params["degauss"], params["conv_thr"]) == ("mv", 0.02, pytest.approx(2e-10))
    assert params == {
        k: v for k, v in choose_parameters(atoms_to_dict(atoms), settings()).items() if k != "rules"
    }
    stress = np.array(result["stress"])
    assert stress[:3] == pytest.approx([stress[0]] * 3, abs=1e-6) and np.abs(stress[3:]).max() < 1e-6  # cubic
    assert json.loads((tmp_path / "label.json").read_text()) == result
    pw_in = (tmp_path / "attempt_1" / "pw.in").read_text()
    assert "ecutwfc          = 20" in pw_in and f"{expected[0]} {expected[1]} {expected[2]}  0 0 0" in pw_in


def test_fcc_al_four_atoms_forces_are_the_energy_gradient(tmp_path):
    atoms = rattled(bulk("Al", "fcc", a=4.05, cubic=True), 0.05, seed=3)
    result = run(atoms, tmp_path / "centre", kspacing=0.8)
    assert_trustworthy(result, atoms)
    assert result["parameters"]["kpts"] == [2, 2, 2]
    step = 0.01
    energies = []
    for sign in (+1, -1):
        moved = atoms.copy()
        moved.positions[0, 0] += sign * step
        energies.append(run(moved, tmp_path / f"moved{sign}", kspacing=0.8)["energy"])
    numerical = -(energies[0] - energies[1]) / (2 * step)
    assert abs(result["forces"][0][0]) > 0.02  # the rattle makes a real force
    assert result["forces"][0][0] == pytest.approx(numerical, rel=0.05, abs=2e-3)


def test_rattled_silicon_eight_atoms(tmp_path):
    atoms = rattled(bulk("Si", "diamond", a=5.43, cubic=True), 0.05, seed=1)
    result = run(atoms, tmp_path, kspacing=0.6)
    assert_trustworthy(result, atoms)
    assert result["parameters"]["kpts"] == [2, 2, 2]
    assert np.abs(result["forces"]).max() > 0.05
    assert result["energy"] / len(atoms) == pytest.approx(-107.6, abs=0.5)  # eV/atom for Si.pz-vbc


def test_spin_polarised_bcc_iron(tmp_path):
    atoms = bulk("Fe", "bcc", a=2.87)
    result = run(atoms, tmp_path, ecutwfc=25, kspacing=0.6)
    assert_trustworthy(result, atoms)
    params = result["parameters"]
    assert params["nspin"] == 2 and params["starting_magnetization"] == {"Fe": 0.375}
    assert params["ecutrho"] == 8 * 25  # ultrasoft: 8x
    assert 1.8 < result["magnetization"] < 3.0  # bcc Fe stays ferromagnetic (about 2.2-2.5 Bohr magnetons)
    assert re.search(
        r"starting_magnetization\(1\)\s*=\s*0.375", (tmp_path / "attempt_1" / "pw.in").read_text()
    )


def test_scf_non_convergence_is_recovered_and_the_attempts_show_what_changed(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05)
    result = run(atoms, tmp_path, electron_maxstep=2)
    assert_trustworthy(result, atoms)
    first, *rest = result["attempts"]
    assert first["failure_kind"] == "scf_not_converged" and first["changes"] == {}
    assert rest[0]["handler"] == "lower_mixing_beta"
    assert rest[0]["changes"] == {
        "mixing_beta": [0.7, 0.49], "electron_maxstep": [2, 4], "mixing_lowered": [None, 1]
    }
    assert rest[-1]["failure_kind"] is None
    for attempt in rest:  # every retry starts from the charge density the attempt before it left
        number = attempt["attempt"]
        assert "startingpot='file'" in (tmp_path / f"attempt_{number}" / "pw.in").read_text().replace(" ", "")
        assert "The initial density is read from file" in (tmp_path / f"attempt_{number}" / "pw.out").read_text()
    assert "startingpot" not in (tmp_path / "attempt_1" / "pw.in").read_text()
    assert not list(tmp_path.glob("attempt_*/scratch"))  # removed once the label is decided
    assert result["parameters"]["mixing_beta"] < 0.7
    assert all((tmp_path / f"attempt_{a['attempt']}" / "pw.out").is_file() for a in result["attempts"])
    reference = run(atoms, tmp_path / "reference")
    assert result["energy"] == pytest.approx(reference["energy"], abs=1e-5)


def test_scf_must_converge_false_is_not_trusted(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05)
    result = run(
        atoms,
        tmp_path,
        electron_maxstep=2,
        max_attempts=1,
        pw_input={"electrons": {"scf_must_converge": False}},
    )
    output = (tmp_path / "attempt_1" / "pw.out").read_text()
    assert "convergence has been achieved" in output  # what pw.x claims
    assert result["status"] == "failed" and result["energy"] is None and result["forces"] is None
    assert result["failure"]["kind"] == "scf_accuracy_above_threshold"
    assert result["scf_accuracy"] > result["parameters"]["conv_thr"]


def test_unrecoverable_failure_is_a_recorded_result_not_an_exception(tmp_path):
    result = run(bulk("Al", "fcc", a=4.05), tmp_path, electron_maxstep=1, max_attempts=2)
    assert result["status"] == "failed" and not result["converged"]
    assert result["energy"] is None and result["forces"] is None and result["stress"] is None
    assert [a["failure_kind"] for a in result["attempts"]] == ["scf_not_converged"] * 2
    assert all("convergence NOT achieved" in a["message"] for a in result["attempts"])
    assert result["failure"]["kind"] == "scf_not_converged"
    assert "gave up after 2 attempt(s)" in result["failure"]["message"]
    assert json.loads((tmp_path / "label.json").read_text())["status"] == "failed"


def processes_in(directory: Path) -> list[str]:
    """Command lines of the processes whose working directory lies inside `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def test_timeout_kills_pw_and_is_retried_once_with_a_longer_limit(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    result = run(atoms, tmp_path, kspacing=0.3, timeout=0.3)
    assert result["status"] == "failed"
    assert [a["failure_kind"] for a in result["attempts"]] == ["timeout", "timeout"]
    assert result["attempts"][1]["changes"]["timeout"] == [0.3, 0.6]
    assert "no recovery handler applies to timeout" in result["failure"]["message"]
    assert not [cmd for cmd in processes_in(tmp_path) if "pw.x" in cmd]  # killed, not left running
    deadline = time.monotonic() + 10  # Open MPI's singleton helper (orted) leaves by itself once pw.x is gone
    while processes_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in(tmp_path) == []


def test_process_killed_from_outside_is_named_killed(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)  # GNU timeout stands in for the OOM killer or scheduler
    result = run(atoms, tmp_path, kspacing=0.3, command="timeout -s KILL 0.5 pw.x")
    assert result["status"] == "failed" and len(result["attempts"]) == 1
    assert result["failure"]["kind"] == "killed"
    assert "pw.x was killed by SIGKILL" in result["failure"]["message"]


def test_overlapping_atoms_are_rejected_before_any_pw_call(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.4, 0.0, 0.0]
    result = run(atoms, tmp_path)
    assert result["status"] == "rejected" and result["attempts"] == [] and result["energy"] is None
    assert result["failure"]["kind"] == "too_close"
    assert "atoms 0 (Al) and 1 (Al) are 0.400 A apart" in result["failure"]["message"]
    assert not list(tmp_path.glob("attempt_*"))


def test_molecule_without_a_cell_is_rejected_for_pw_but_fine_for_emt(tmp_path):
    co = molecule("CO")
    result = label(
        atoms_to_dict(co),
        settings(pseudopotentials={"C": "C.UPF", "O": "O.pbe-rrkjus.UPF"}),
        str(tmp_path / "qe"),
    )
    assert result["status"] == "rejected" and result["failure"]["kind"] == "no_cell"
    assert "pw.x needs a periodic cell" in result["failure"]["message"]
    emt = label(atoms_to_dict(co), DFTSettings(engine="emt").model_dump(mode="json"), str(tmp_path / "emt"))
    assert emt["status"] == "ok" and emt["stress"] is None and len(emt["forces"]) == 2


def test_element_without_pseudopotential_is_refused_before_any_pw_call(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(DFTError, match=r"dft.pseudopotentials.Cu: no pseudopotential is given") as err:
        run(atoms, tmp_path)
    assert "Cu.pbe-kjpaw.UPF" in str(err.value)  # the files that would do
    assert not list(tmp_path.glob("attempt_*"))


def test_missing_pw_command_says_how_to_install_it(tmp_path):
    with pytest.raises(DFTError, match="apt-get install quantum-espresso"):
        run(bulk("Al"), tmp_path, command="mpirun -np 2 no-such-pw.x")


def test_omp_threads_and_launcher_reach_the_process(tmp_path):
    launcher = tmp_path / "launcher.sh"
    launcher.write_text('#!/bin/sh\necho "OMP=$OMP_NUM_THREADS" >&2\nexec "$@"\n')
    launcher.chmod(0o755)
    result = run(bulk("Al"), tmp_path / "run", command=f"{launcher} pw.x", omp_num_threads=2)
    assert result["status"] == "ok"
    assert (tmp_path / "run" / "attempt_1" / "pw.err").read_text().startswith("OMP=2")


def test_emt_reference_engine_is_named_and_never_called_dft(tmp_path):
    atoms = rattled(bulk("Cu", "fcc", a=3.6, cubic=True), 0.05, seed=2)
    result = label(atoms_to_dict(atoms), DFTSettings(engine="emt").model_dump(mode="json"), str(tmp_path))
    assert (result["status"], result["engine"], result["code_version"][:3]) == ("ok", "emt", "ase")
    assert np.abs(np.sum(result["forces"], axis=0)).max() < 1e-8 and len(result["stress"]) == 6
    assert "dft" not in json.dumps(result).lower()


def test_an_output_that_does_not_belong_to_its_input_is_never_stored(tmp_path):
    """A 'pw.x' that prints the same (real, converged) output whatever it is given: every other structure
    fails as geometry_mismatch instead of being stored with the first structure's numbers."""
    reference = run(bulk("Al", "fcc", a=4.05), tmp_path / "reference")
    assert reference["status"] == "ok"
    canned = tmp_path / "pw-canned"
    canned.write_text(f"#!/bin/sh\ncat {tmp_path / 'reference' / 'attempt_1' / 'pw.out'}\n")
    canned.chmod(0o755)
    same = run(bulk("Al", "fcc", a=4.05), tmp_path / "same", command=str(canned))
    assert same["status"] == "ok"  # the output really is this structure's
    others = {"strained": bulk("Al", "fcc", a=4.1), "moved": rattled(bulk("Al", "fcc", a=4.05), 0.05, 1),
              "species": bulk("Si", "fcc", a=4.05)}
    for name, atoms in others.items():
        result = run(atoms, tmp_path / name, command=str(canned))
        assert result["status"] == "failed" and result["energy"] is None, name
        assert result["failure"]["kind"] == "geometry_mismatch", name
        assert len(result["attempts"]) == 1  # no recovery can make a foreign output fit
