"""The QE recovery handlers in the order the factory asks them (no pw.x needed: failures are given)."""

import pytest

from autopipe.apps.dft.parameters import MIXING_BETA_FLOOR
from autopipe.apps.dft.pwout import FAILURE_KINDS
from autopipe.apps.dft.recovery import QE_HANDLERS, more_bands
from autopipe.apps.dft.settings import DFTSettings
from autopipe.apps.retry import AttemptFailed, Failure, retry

START = {
    "mixing_beta": 0.7,
    "electron_maxstep": 100,
    "diagonalization": "david",
    "degauss": 0.02,
    "nbnd": None,
    "timeout": 60.0,
    "timeout_extended": False,
}


def remedies(kinds, details=None, max_attempts=20):
    """Handlers and changes chosen when a step keeps failing with the given kinds (the last one repeats)."""

    def step(params, *, attempt):
        kind = kinds[min(attempt, len(kinds)) - 1]
        raise AttemptFailed(Failure(kind, "provoked", details or {}))

    outcome = retry(handlers=QE_HANDLERS, max_attempts=max_attempts)(step)(dict(START))
    return [(a.handler, a.changes) for a in outcome.attempts[1:]], outcome


def test_scf_remedies_take_turns_within_the_default_attempts():
    """With dft.max_attempts at its default, both SCF remedies get a try (before, mixing used them all)."""
    default = DFTSettings().max_attempts
    steps, outcome = remedies(["scf_not_converged"], max_attempts=default)
    assert [h for h, _ in steps] == ["lower_mixing_beta", "switch_diagonalization", "lower_mixing_beta"]
    assert steps[0][1]["mixing_beta"] == [0.7, 0.49] and steps[0][1]["electron_maxstep"] == [100, 200]
    assert steps[1][1] == {"diagonalization": ["david", "cg"]}
    assert steps[2][1]["mixing_beta"] == [0.49, 0.343]
    assert len(outcome.attempts) == default and "the limit" in outcome.failure.message


def test_scf_remedies_run_out_with_mixing_at_its_floor_and_the_last_diagonaliser():
    steps, outcome = remedies(["scf_not_converged"])
    betas = [c["mixing_beta"][1] for h, c in steps if h == "lower_mixing_beta"]
    assert betas == [0.49, 0.343, 0.2401, 0.1681, 0.1177, MIXING_BETA_FLOOR]
    assert outcome.params["diagonalization"] == "ppcg"
    assert "no recovery handler applies" in outcome.failure.message


@pytest.mark.parametrize("kind", sorted(FAILURE_KINDS))
def test_no_recovery_changes_what_a_label_computes(kind):
    """Smearing, cutoffs and k-points are the dataset's: a recovered label has the same physics."""
    start = {**START, "ecutwfc": 30.0, "ecutrho": 120.0, "kpts": [4, 4, 4], "smearing": "mv"}
    for step in retry(handlers=QE_HANDLERS, max_attempts=20)(
        lambda params, *, attempt: (_ for _ in ()).throw(AttemptFailed(Failure(kind, "x", {"nbnd": 8})))
    )(start).attempts:
        assert not {"degauss", "smearing", "ecutwfc", "ecutrho", "kpts", "occupations"} & step.changes.keys()


def test_diagonalisation_errors_go_straight_to_another_diagonaliser():
    steps, outcome = remedies(["cholesky", "s_matrix_not_positive_definite"])
    assert steps == [
        ("switch_diagonalization", {"diagonalization": ["david", "cg"]}),
        ("switch_diagonalization", {"diagonalization": ["cg", "ppcg"]}),
    ]
    assert outcome.params["mixing_beta"] == 0.7


def test_timeout_is_retried_once_with_twice_the_limit():
    steps, outcome = remedies(["timeout"])
    assert steps == [("longer_timeout", {"timeout": [60.0, 120.0], "timeout_extended": [False, True]})]
    assert len(outcome.attempts) == 2


@pytest.mark.parametrize(("nbnd", "expected"), [(6, 10), (100, 105)])
def test_occupied_top_band_adds_five_percent_and_at_least_four_bands(nbnd, expected):
    failure = Failure("top_band_occupied", "provoked", {"nbnd": nbnd})
    assert more_bands(failure, dict(START))["nbnd"] == expected
    assert more_bands(Failure("top_band_occupied", "no band count"), dict(START)) is None


@pytest.mark.parametrize(
    "kind", ["killed", "truncated_output", "qe_error", "missing_forces", "unparsable_output"]
)
def test_failures_without_a_known_remedy_are_not_retried(kind):
    steps, outcome = remedies([kind])
    assert steps == [] and len(outcome.attempts) == 1 and outcome.failure.kind == kind
