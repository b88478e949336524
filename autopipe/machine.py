"""The active-learning loop as a finite-state machine, built with `transitions` from the table below.

The workflow reports what a stage produced; the machine applies the table's guards, moves, and answers
with the `StateEntered` payload (state, generation, reason) for the workflow to append. Since the log
holds those events, `fold` restores state and generation and `LoopMachine.from_run_state` carries on.

SELECT's guards are the stopping rules, checked in the table's order: the validation target
(`loop.target_force_rmse`), the DFT budget, the generation limit, and "nothing uncertain", which counts
only when every walker of the configured schedule ran to its last step (`SelectOutcome.exploration_gaps`).

Generations: generation 0 holds the initial structures, their labels and the first potential; SELECT
of generation g moves to DFT of generation g + 1. `max_generations` counts potentials trained, so with
max_generations=2 the SELECT of generation 1 ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from transitions import Machine, MachineError

from autopipe.errors import RunError
from autopipe.events import LoopState, RunState, StateEntered

STATES: list[str] = list(get_args(LoopState))  # INIT, DFT, TRAIN, EXPLORE, SELECT, ASSESS, DONE, FAILED

# When a trigger's guards do not all hold it does not fire, and the loop fires the fallback on the next
# row instead (too_many_failures, assess, finish; aim, not_usable); the first guard that failed names the reason.
#
#  trigger              source     dest       guards (all must hold)                     action
TABLE: list[tuple[str, str, str, tuple[str, ...], str | None]] = [
    ("structures_ready",  "INIT",    "DFT",     (),                                        None),
    ("labels_done",       "DFT",     "TRAIN",   ("failures_tolerated",),                   None),
    ("too_many_failures", "DFT",     "FAILED",  (),                                        None),
    ("model_trained",     "TRAIN",   "EXPLORE", (),                                        None),
    ("explored",          "EXPLORE", "SELECT",  (),                                        None),
    ("next_generation",   "SELECT",  "DFT",     ("target_not_met", "dft_budget_left", "generations_left",
                                                 "candidates_selected"),                   "new_generation"),
    ("assess",            "SELECT",  "ASSESS",  ("assessment_enabled",),                   None),
    ("finish",            "SELECT",  "DONE",    (),                                        None),
    ("usable",            "ASSESS",  "DONE",    ("verdict_usable",),                       None),
    ("aim",               "ASSESS",  "EXPLORE", ("rounds_left", "dft_budget_left",
                                                 "generations_left"),                      None),
    ("not_usable",        "ASSESS",  "DONE",    (),                                        None),
    ("fail",              "*",       "FAILED",  (),                                        None),
    # retry: a FAILED run whose cause was fixed goes back to the stage that failed (LoopMachine.retry)
    ("retry",             "FAILED",  "=",       (),                                        None),
]  # fmt: skip

#: The reason recorded when a guard does not hold (SELECT's guards add their numbers: `_select_reason`).
GUARD_FAILED: dict[str, str] = {
    "failures_tolerated": "too many failed DFT labels",
    "target_not_met": "validation target met",
    "candidates_selected": "no uncertain configurations",
    "generations_left": "generation limit reached",
    "dft_budget_left": "DFT budget exhausted",
    "rounds_left": "assessment rounds used up",
    "assessment_enabled": "assessment turned off (assess.enabled: false)",
    "verdict_usable": "not usable",
}

_GUARDS = {trigger: guards for trigger, _, _, guards, _ in TABLE}


@dataclass(frozen=True)
class LabelOutcome:
    """How the DFT labels of one generation ended."""

    n_done: int
    n_failed: int
    max_failed_fraction: float


@dataclass(frozen=True)
class SelectOutcome:
    """What SELECT found, and the limits that decide whether another generation runs."""

    n_selected: int
    labels_done: int  # DFT labels computed so far, all generations
    dft_budget: int | None  # most labels the run may compute; None = no limit
    max_generations: int  # potentials to train
    assess: bool = True  # whether ASSESS follows the loop's end (assess.enabled)
    n_candidates: int = 0  # frames at or above gamma_select that the walkers kept
    exploration_gaps: str = ""  # why the exploration fell short of the configured schedule; "" = it did not
    validation_force_rmse: float | None = None  # meV/A: this generation's potential on its validation set
    target_force_rmse: float | None = None  # loop.target_force_rmse; None = no target
    aimed: bool = False  # the exploration was aimed at a failed assessment, whose verdict outranks the target


@dataclass(frozen=True)
class AssessOutcome:
    """The assessment's verdict, and the limits that decide whether the loop may aim at what failed."""

    usable: bool
    reason: str
    rounds_used: int  # failed assessments so far, this one included
    max_rounds: int
    labels_done: int
    dft_budget: int | None
    max_generations: int


def _select_reason(guard: str, outcome: SelectOutcome) -> str:
    """Why SELECT ends the loop, with the numbers behind it. "No uncertain configurations" is claimed only
    after the whole configured exploration ran: a walker that exploded, failed or halted early explored
    less, so finding nothing then is reported as an incomplete exploration instead."""
    if guard == "target_not_met":
        return (
            f"{GUARD_FAILED[guard]}: validation force RMSE {outcome.validation_force_rmse:.1f} meV/A <= "
            f"loop.target_force_rmse {outcome.target_force_rmse:g} meV/A"
        )
    if guard != "candidates_selected":
        return GUARD_FAILED[guard]
    if outcome.exploration_gaps:
        return f"exploration incomplete, nothing selected: {outcome.exploration_gaps}"
    if outcome.n_candidates:
        return f"no new configurations: none of the {outcome.n_candidates} candidates was selected"
    return f"{GUARD_FAILED[guard]}: the full exploration schedule found nothing above gamma_select"


class _Loop:
    """The model `transitions` drives: it holds state and generation, and its methods are the guards."""

    state: str

    def __init__(self, generation: int) -> None:
        self.generation = generation

    def failures_tolerated(self, outcome: LabelOutcome) -> bool:
        return outcome.n_failed <= outcome.max_failed_fraction * (outcome.n_done + outcome.n_failed)

    def target_not_met(self, outcome: SelectOutcome) -> bool:
        if outcome.aimed or outcome.target_force_rmse is None or outcome.validation_force_rmse is None:
            return True
        return outcome.validation_force_rmse > outcome.target_force_rmse

    def candidates_selected(self, outcome: SelectOutcome) -> bool:
        return outcome.n_selected > 0

    def generations_left(self, outcome: SelectOutcome | AssessOutcome) -> bool:
        return self.generation + 1 < outcome.max_generations

    def dft_budget_left(self, outcome: SelectOutcome | AssessOutcome) -> bool:
        return outcome.dft_budget is None or outcome.labels_done < outcome.dft_budget

    def assessment_enabled(self, outcome: SelectOutcome) -> bool:
        return outcome.assess

    def verdict_usable(self, outcome: AssessOutcome) -> bool:
        return outcome.usable

    def rounds_left(self, outcome: AssessOutcome) -> bool:
        return outcome.rounds_used <= outcome.max_rounds

    def new_generation(self, outcome: SelectOutcome) -> None:
        self.generation += 1


class LoopMachine:
    """The loop's state and generation; each method reports a finished stage and returns what to record.

    Example::

        machine = LoopMachine.from_run_state(fold(store.events()))
        store.append("state.entered", machine.labels_finished(LabelOutcome(10, 1, 0.5)))
    """

    def __init__(self, state: str = "INIT", generation: int = 0) -> None:
        if state not in STATES:
            raise RunError(f"unknown loop state {state!r}; the states are {', '.join(STATES)}")
        self._loop = _Loop(generation)
        self._fsm = Machine(
            model=self._loop,
            states=STATES,
            transitions=[
                {
                    "trigger": trigger,
                    "source": source,
                    "dest": dest,
                    "conditions": list(guards),
                    "after": action or [],
                }
                for trigger, source, dest, guards, action in TABLE
            ],
            initial=state,
            auto_transitions=False,
        )

    @classmethod
    def from_run_state(cls, run: RunState) -> LoopMachine:
        """The machine where a replayed log left it (INIT if no state was entered yet)."""
        return cls(run.state or "INIT", run.generation)

    @property
    def state(self) -> str:
        return self._loop.state

    @property
    def generation(self) -> int:
        return self._loop.generation

    def entered(self, reason: str = "") -> StateEntered:
        """The `state.entered` payload for the current state."""
        return StateEntered(state=self.state, generation=self.generation, reason=reason)

    def structures_ready(self) -> StateEntered:
        self._fire("structures_ready")
        return self.entered("initial structures ready")

    def labels_finished(self, outcome: LabelOutcome) -> StateEntered:
        """DFT -> TRAIN, or FAILED if more than the tolerated fraction of labels failed."""
        summary = f"{outcome.n_done} labels done, {outcome.n_failed} failed"
        if self._fire("labels_done", outcome):
            return self.entered(summary)
        self._fire("too_many_failures")
        return self.entered(
            f"{GUARD_FAILED['failures_tolerated']}: {summary}; at most "
            f"{outcome.max_failed_fraction:.0%} may fail"
        )

    def model_trained(self) -> StateEntered:
        self._fire("model_trained")
        return self.entered("potential trained")

    def explored(self) -> StateEntered:
        self._fire("explored")
        return self.entered("exploration finished")

    def selection_finished(self, outcome: SelectOutcome) -> StateEntered:
        """SELECT -> DFT of the next generation, else ASSESS (or DONE when assessment is off) with the reason
        of the first guard that failed."""
        if self._fire("next_generation", outcome):
            return self.entered(f"{outcome.n_selected} configurations selected")
        reason = _select_reason(self._first_failed("next_generation", outcome), outcome)
        if not self._fire("assess", outcome):
            self._fire("finish")
        return self.entered(reason)

    def assessed(self, outcome: AssessOutcome) -> StateEntered:
        """ASSESS -> DONE when usable; EXPLORE aimed at the failure while rounds, budget and generations last;
        else DONE with the verdict "not usable" and why."""
        if self._fire("usable", outcome):
            return self.entered(f"usable: {outcome.reason}")
        if self._fire("aim", outcome):
            return self.entered(f"not usable yet ({outcome.reason}): exploring aimed at it")
        limit = GUARD_FAILED[self._first_failed("aim", outcome)]
        self._fire("not_usable")
        return self.entered(f"not usable ({outcome.reason}); {limit}")

    def _first_failed(self, trigger: str, outcome: object) -> str:
        """The name of the first guard of `trigger` that does not hold."""
        return next(guard for guard in _GUARDS[trigger] if not getattr(self._loop, guard)(outcome))

    def fail(self, reason: str) -> StateEntered:
        self._fire("fail")
        return self.entered(reason)

    def retry(self, stage: str, generation: int, reason: str) -> StateEntered:
        """FAILED -> `stage` of `generation`, the stage that failed (read from the log), its cause fixed."""
        if stage not in STATES or stage in ("DONE", "FAILED"):
            raise RunError(f"cannot retry {stage!r}: only a stage of the loop can be run again")
        self._fire("retry")
        self._fsm.set_state(stage, model=self._loop)
        self._loop.generation = generation
        return self.entered(reason)

    def _fire(self, trigger: str, *args: object) -> bool:
        """Fire a trigger; False when its guards do not hold, RunError when the state does not allow it."""
        try:
            return self._loop.trigger(trigger, *args)
        except MachineError:
            allowed = ", ".join(self._fsm.get_triggers(self.state))
            raise RunError(
                f"the loop cannot take {trigger!r} in state {self.state} (allowed there: {allowed})"
            ) from None
