"""Run a step again with changed parameters after a recognised failure, recording every attempt.

Generic on purpose (DFT labels, fits and MD walkers use it alike). The decorated step signals a failure it
understands by raising `AttemptFailed(Failure(kind, message))`; every other exception is a bug or an impossible
setup and propagates untouched. After a failure the handlers are asked in order, each
`(failure, params) -> new params | None`; the first that returns new parameters wins. The shape follows
custodian's check/correct split and aiida-quantumespresso's one-handler-per-failure style.

    >>> def halve_step(failure, params):
    ...     return {**params, "step": params["step"] / 2} if failure.kind == "diverged" else None
    >>> @retry(handlers=[halve_step], max_attempts=3)
    ... def integrate(params, *, attempt):
    ...     if params["step"] > 0.3:
    ...         raise AttemptFailed(Failure("diverged", f"step {params['step']} too large"))
    ...     return "done"
    >>> outcome = integrate({"step": 1.0})
    >>> outcome.result, [a.changes for a in outcome.attempts]
    ('done', [{}, {'step': [1.0, 0.5]}, {'step': [0.5, 0.25]}])
"""

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")
Params = dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """A recognised way a step can fail: a stable `kind` name, a human message, facts for the handlers."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class AttemptFailed(Exception):
    """Raised by a step to report a recognised failure that a handler may fix."""

    def __init__(self, failure: Failure):
        super().__init__(f"{failure.kind}: {failure.message}")
        self.failure = failure


Handler = Callable[[Failure, Params], Params | None]


@dataclass
class Attempt:
    """One try: what it changed relative to the try before (by which handler), how it ended, how long it took."""

    attempt: int
    failure_kind: str | None
    message: str
    changes: dict[str, list[Any]]
    wall_time: float = 0.0
    handler: str | None = None
    handler_errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetryOutcome(Generic[R]):
    """What the decorated step returns: its result or the final failure, the last parameters, every attempt."""

    result: R | None
    params: Params
    attempts: list[Attempt]
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def changed_keys(old: Params, new: Params) -> dict[str, list[Any]]:
    """`{key: [old, new]}` for every top-level key whose value differs (missing keys read as None)."""
    return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__name__", type(handler).__name__)


def _recover(
    handlers: Sequence[Handler], failure: Failure, params: Params, record: Attempt
) -> tuple[str, Params] | None:
    """Ask the handlers in order; a handler that raises is logged, recorded and skipped."""
    for handler in handlers:
        try:
            proposal = handler(failure, dict(params))
        except Exception as exc:  # noqa: BLE001 -- a broken handler must not hide the failure it handles
            note = f"{_handler_name(handler)} raised {type(exc).__name__}: {exc}"
            log.warning("recovery handler failed: %s", note)
            record.handler_errors.append(note)
            continue
        if proposal is not None and proposal != params:
            return _handler_name(handler), proposal
    return None


def retry(
    handlers: Sequence[Handler], max_attempts: int
) -> Callable[[Callable[..., R]], Callable[..., RetryOutcome[R]]]:
    """Decorate `step(params, *args, attempt: int, **kwargs) -> R` to retry recognised failures.

    The wrapped function is called as `wrapped(params, *args, **kwargs)` and returns a `RetryOutcome`.
    It stops at the first success, after `max_attempts` tries, or when no handler proposes new parameters.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")

    def decorate(step: Callable[..., R]) -> Callable[..., RetryOutcome[R]]:
        @functools.wraps(step)
        def wrapped(params: Params, *args: Any, **kwargs: Any) -> RetryOutcome[R]:
            attempts: list[Attempt] = []
            changes: dict[str, list[Any]] = {}
            handler_name: str | None = None
            for number in range(1, max_attempts + 1):
                start = time.perf_counter()
                try:
                    result = step(dict(params), *args, attempt=number, **kwargs)
                except AttemptFailed as exc:
                    failure = exc.failure
                    record = Attempt(
                        number,
                        failure.kind,
                        failure.message,
                        changes,
                        time.perf_counter() - start,
                        handler_name,
                        details=dict(failure.details),
                    )
                    attempts.append(record)
                else:
                    attempts.append(
                        Attempt(number, None, "ok", changes, time.perf_counter() - start, handler_name)
                    )
                    return RetryOutcome(result, params, attempts, None)
                if number == max_attempts:
                    reason = f"gave up after {max_attempts} attempt(s), the limit"
                    break
                recovery = _recover(handlers, failure, params, record)
                if recovery is None:
                    reason = (
                        f"gave up after {number} attempt(s): no recovery handler applies to {failure.kind}"
                    )
                    break
                handler_name, new_params = recovery
                changes = changed_keys(params, new_params)
                params = new_params
            final = Failure(failure.kind, f"{failure.message} ({reason})", failure.details)
            return RetryOutcome(None, params, attempts, final)

        return wrapped

    return decorate
