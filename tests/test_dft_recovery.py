"""The QE recovery handlers in the order the factory asks them (no pw.x needed: failures are given)."""

import pytest

from autopipe.apps.dft.parameters import MIXING_BETA_FLOOR
from autopipe.apps.dft.recovery import QE_HANDLERS, more_bands
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


def test_scf_failure_lowers_mixing_to_the_floor_then_switches_diagonaliser_then_smears():
    steps, outcome = remedies(["scf_not_converged"])
    handlers = [h for h, _ in steps]
    betas = [c["mixing_beta"][1] for h, c in steps if h == "lower_mixing_beta"]
    assert betas == [0.49, 0.343, 0.2401, 0.1681, 0.1177, MIXING_BETA_FLOOR]
    assert steps[0][1]["electron_maxstep"] == [100, 200]
    after_mixing = handlers[len(betas) :]
    assert after_mixing == [
        "switch_diagonalization",
        "switch_diagonalization",
        "more_smearing",
        "more_smearing",
    ]
    assert outcome.params["diagonalization"] == "ppcg"
    assert outcome.params["degauss"] == 0.05  # doubled twice, capped
    assert "no recovery handler applies" in outcome.failure.message


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
