"""The generic @retry decorator: handler order, attempt limit, handlers that decline or break."""

import pytest

from autopipe.apps.retry import AttemptFailed, Failure, changed_keys, retry


def flaky(fail_while):
    """A step failing with kind 'bad' while `fail_while(params)` holds; records the attempt numbers it saw."""
    seen = []

    def step(params, *, attempt):
        seen.append(attempt)
        if fail_while(params):
            raise AttemptFailed(Failure("bad", f"x={params['x']}", {"x": params["x"]}))
        return params["x"]

    step.seen = seen
    return step


def add(amount):
    def handler(failure, params):
        return {**params, "x": params["x"] + amount}

    handler.__name__ = f"add_{amount}"
    return handler


def declines(failure, params):
    return None


def test_success_on_first_attempt_records_one_clean_attempt():
    step = flaky(lambda p: False)
    outcome = retry(handlers=[add(1)], max_attempts=3)(step)({"x": 5})
    assert outcome.ok and outcome.result == 5
    assert [(a.attempt, a.failure_kind, a.changes) for a in outcome.attempts] == [(1, None, {})]


def test_first_handler_that_proposes_wins_and_changes_are_recorded():
    step = flaky(lambda p: p["x"] < 3)
    second = add(100)
    outcome = retry(handlers=[declines, add(1), second], max_attempts=5)(step)({"x": 0})
    assert outcome.result == 3 and outcome.params == {"x": 3}
    assert [a.handler for a in outcome.attempts] == [None, "add_1", "add_1", "add_1"]
    assert [a.changes for a in outcome.attempts] == [{}, {"x": [0, 1]}, {"x": [1, 2]}, {"x": [2, 3]}]
    assert [a.failure_kind for a in outcome.attempts] == ["bad", "bad", "bad", None]
    assert step.seen == [1, 2, 3, 4]


def test_attempt_limit_stops_and_keeps_every_reason():
    step = flaky(lambda p: True)
    outcome = retry(handlers=[add(1)], max_attempts=3)(step)({"x": 0})
    assert not outcome.ok and outcome.result is None
    assert step.seen == [1, 2, 3]
    assert [a.message for a in outcome.attempts] == ["x=0", "x=1", "x=2"]
    assert outcome.failure.kind == "bad"
    assert "gave up after 3 attempt(s), the limit" in outcome.failure.message


def test_all_handlers_declining_stops_early_with_the_reason():
    step = flaky(lambda p: True)
    outcome = retry(handlers=[declines], max_attempts=5)(step)({"x": 0})
    assert step.seen == [1]
    assert "no recovery handler applies to bad" in outcome.failure.message


def test_handler_returning_unchanged_params_counts_as_declining():
    step = flaky(lambda p: True)
    outcome = retry(handlers=[lambda f, p: dict(p)], max_attempts=5)(step)({"x": 0})
    assert step.seen == [1] and not outcome.ok


def test_exception_inside_a_handler_is_recorded_and_the_next_handler_is_asked():
    def broken(failure, params):
        raise KeyError("nbnd")

    step = flaky(lambda p: p["x"] < 1)
    outcome = retry(handlers=[broken, add(1)], max_attempts=3)(step)({"x": 0})
    assert outcome.ok and outcome.result == 1
    assert outcome.attempts[0].handler_errors == ["broken raised KeyError: 'nbnd'"]
    assert outcome.attempts[1].handler == "add_1"


def test_handlers_see_the_failure_and_cannot_mutate_the_callers_params():
    seen = []

    def spy(failure, params):
        seen.append((failure.kind, failure.details))
        params["x"] = 99  # mutating its copy must not leak into the recorded parameters

    original = {"x": 0}
    outcome = retry(handlers=[spy], max_attempts=2)(flaky(lambda p: True))(original)
    assert seen == [("bad", {"x": 0})]
    assert original == {"x": 0} and outcome.params == {"x": 0}


def test_unrecognised_exceptions_from_the_step_propagate():
    def step(params, *, attempt):
        raise RuntimeError("setup impossible")

    with pytest.raises(RuntimeError, match="setup impossible"):
        retry(handlers=[add(1)], max_attempts=3)(step)({"x": 0})


def test_extra_arguments_reach_the_step_and_wall_time_is_measured():
    def step(params, scale, *, attempt, offset):
        return params["x"] * scale + offset

    outcome = retry(handlers=[], max_attempts=1)(step)({"x": 2}, 10, offset=1)
    assert outcome.result == 21
    assert outcome.attempts[0].wall_time >= 0
    assert outcome.attempts[0].as_dict()["attempt"] == 1


def test_max_attempts_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        retry(handlers=[], max_attempts=0)


def test_changed_keys_lists_old_and_new_values():
    assert changed_keys({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": [2, 3], "c": [None, 4]}
