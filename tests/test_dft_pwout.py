"""The pw.x output checks: every way an output can be untrustworthy gets its own named failure, never a crash.

The outputs are real (pw.x on one Al atom, under a second) and then cut, garbled or given an error block.
"""

import random
import re
from pathlib import Path

import pytest
from ase.build import bulk

from autopipe.apps.dft.label import label
from autopipe.apps.dft.pwout import FAILURE_KINDS, RunInfo, check_output, top_band_occupation
from autopipe.apps.dft.pwscf import run_pw, write_input
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.retry import AttemptFailed
from autopipe.apps.structures import atoms_to_dict

pytestmark = pytest.mark.qe

CONV_THR = 1e-8
OK_RUN = RunInfo(returncode=0)
ERROR_BLOCK = """
 %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%
     Error in routine {routine} (1):
     {message}
 %%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%

     stopping ...
"""


@pytest.fixture(scope="module")
def al_run(tmp_path_factory):
    """A real converged label of fcc Al and the parameters it used."""
    workdir = tmp_path_factory.mktemp("al")
    settings = DFTSettings(pseudopotentials={"Al": "Al.pz-vbc.UPF"}, ecutwfc=20, kspacing=0.6)
    result = label(atoms_to_dict(bulk("Al")), settings.model_dump(mode="json"), str(workdir))
    assert result["status"] == "ok"
    return result, workdir


@pytest.fixture(scope="module")
def good(al_run):
    return (al_run[1] / "attempt_1" / "pw.out").read_text()


def failure_of(text, run=OK_RUN, conv_thr=CONV_THR, nat=1):
    with pytest.raises(AttemptFailed) as err:
        check_output(text, run, conv_thr=conv_thr, nat=nat)
    assert err.value.failure.kind in FAILURE_KINDS
    return err.value.failure


def test_the_real_output_passes_and_matches_the_label(good, al_run):
    parsed = check_output(good, OK_RUN, conv_thr=CONV_THR, nat=1)
    assert parsed["energy"] == pytest.approx(al_run[0]["energy"])
    assert parsed["code_version"].startswith("pw.x 6.")
    assert parsed["scf_accuracy"] < CONV_THR and parsed["scf_steps"] >= 1


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_output_cut_mid_run_is_truncated_output(good, fraction):
    failure = failure_of(good[: int(len(good) * fraction)])
    assert failure.kind == "truncated_output"
    assert "ends before 'JOB DONE.'" in failure.message


def test_random_bytes_are_truncated_output():
    noise = "".join(chr(random.Random(7).randrange(32, 127)) for _ in range(2000))
    assert failure_of(noise).kind == "truncated_output"
    assert failure_of("").kind == "truncated_output"


def test_garbled_numbers_after_job_done_are_unparsable_output(good):
    garbled = re.sub(r"(force =)\s+\S+\s+\S+\s+\S+", r"\1  ***  ***  ***", good)
    assert failure_of(garbled).kind == "unparsable_output"


def test_missing_final_energy_line(good):
    assert failure_of(good.replace("!    total energy", "     total energy")).kind == "no_energy"


def test_missing_forces_and_stress(good):
    assert failure_of(good.replace("Forces acting on atoms", "Forces omitted")).kind == "missing_forces"
    assert failure_of(good.replace("total   stress", "no stress")).kind == "missing_stress"
    assert failure_of(good, nat=2).kind == "missing_forces"  # one force line for two atoms


def test_accuracy_above_threshold_although_converged(good):
    failure = failure_of(good, conv_thr=1e-14)
    assert failure.kind == "scf_accuracy_above_threshold"
    assert failure.details["scf_accuracy"] > 1e-14


@pytest.mark.parametrize(
    ("routine", "message", "kind"),
    [
        ("cdiaghg", "problems computing cholesky", "cholesky"),
        ("rdiaghg", "S matrix not positive definite", "s_matrix_not_positive_definite"),
        ("c_bands", "too many bands are not converged", "too_many_bands_not_converged"),
        ("cdiaghg", "eigenvectors failed to converge", "eigenvectors_not_converged"),
        ("readpp", "file ./Al.UPF not found", "qe_error"),
    ],
)
def test_error_blocks_are_named_even_with_exit_code_zero(good, routine, message, kind):
    head = good.split("Self-consistent Calculation")[0]
    failure = failure_of(head + ERROR_BLOCK.format(routine=routine, message=message))
    assert failure.kind == kind
    assert failure.message == f"Error in routine {routine}: {message}"


def test_killed_process_and_nonzero_exit(good):
    half = good[: len(good) // 2]
    assert failure_of(half, RunInfo(returncode=-9)).message.startswith("pw.x was killed by SIGKILL")
    assert failure_of(half, RunInfo(returncode=137)).kind == "killed"  # a launcher reporting 128 + 9
    assert failure_of(good, RunInfo(returncode=1, stderr="MPI_ABORT")).kind == "nonzero_exit"


def test_timeout_wins_over_everything(good):
    failure = failure_of(good, RunInfo(returncode=-15, timed_out=True, timeout=2.0))
    assert (failure.kind, failure.message) == ("timeout", "pw.x did not finish within 2 s and was killed")


def test_real_unconverged_run_is_scf_not_converged_despite_job_done(al_run, tmp_path):
    params = {**al_run[0]["parameters"], "electron_maxstep": 2}
    write_input(bulk("Al"), params, tmp_path)
    run = run_pw(["pw.x"], tmp_path, timeout=60, omp_num_threads=1)
    text = (tmp_path / "pw.out").read_text()
    assert "JOB DONE." in text and run.returncode == 2
    failure = failure_of(text, run, conv_thr=params["conv_thr"])
    assert failure.kind == "scf_not_converged"
    assert failure.details["scf_steps"] == 2 and failure.details["scf_accuracy"] > params["conv_thr"]


def test_occupied_top_band_is_caught_and_reports_the_band_count(al_run, tmp_path):
    params = {**al_run[0]["parameters"], "nbnd": 2}  # Al has 3 electrons: 2 bands leave the top one occupied
    write_input(bulk("Al"), params, tmp_path)
    run = run_pw(["pw.x"], tmp_path, timeout=60, omp_num_threads=1)
    text = (tmp_path / "pw.out").read_text()
    assert top_band_occupation(text) > 0.5
    failure = failure_of(text, run, conv_thr=params["conv_thr"])
    assert failure.kind == "top_band_occupied" and failure.details["nbnd"] == 2


def test_attempt_directory_keeps_input_output_and_stderr_but_not_scratch(al_run):
    attempt = Path(al_run[1]) / "attempt_1"
    assert {p.name for p in attempt.iterdir()} == {"pw.in", "pw.out", "pw.err"}
    assert "K_POINTS automatic" in (attempt / "pw.in").read_text()
