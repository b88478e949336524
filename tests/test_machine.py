"""The loop's state machine: every transition and guard, the DONE reasons, FAILED, and replay from the log."""

from dataclasses import replace

import pytest

from autopipe.errors import RunError
from autopipe.events import EVENTS_FILE, EventStore, RunState, fold
from autopipe.machine import (
    GUARD_FAILED,
    STATES,
    TABLE,
    AssessOutcome,
    LabelOutcome,
    LoopMachine,
    SelectOutcome,
)

GOOD_LABELS = LabelOutcome(n_done=10, n_failed=0, max_failed_fraction=0.5)


NOTHING_UNCERTAIN = "no uncertain configurations: the full exploration schedule found nothing above gamma_select"


def select(n_selected=3, labels_done=10, dft_budget=None, max_generations=5, assess=False, **rules):
    return SelectOutcome(n_selected, labels_done, dft_budget, max_generations, assess, **rules)


def verdict(usable, rounds_used=1, max_rounds=2, labels_done=10, dft_budget=None, max_generations=5):
    return AssessOutcome(usable, "a0 +2.3%", rounds_used, max_rounds, labels_done, dft_budget, max_generations)


def to_assess(machine):
    """Drive a machine in DFT to ASSESS (nothing uncertain found)."""
    to_select(machine)
    return machine.selection_finished(select(n_selected=0, assess=True))


def to_select(machine):
    """Drive a machine in DFT through TRAIN and EXPLORE to SELECT."""
    machine.labels_finished(GOOD_LABELS)
    machine.model_trained()
    return machine.explored()


def test_one_generation_goes_through_every_working_state():
    machine = LoopMachine()
    steps = [
        machine.structures_ready(),
        machine.labels_finished(LabelOutcome(8, 1, 0.25)),
        machine.model_trained(),
        machine.explored(),
        machine.selection_finished(select(n_selected=4)),
    ]
    assert [(s.state, s.generation, s.reason) for s in steps] == [
        ("DFT", 0, "initial structures ready"),
        ("TRAIN", 0, "8 labels done, 1 failed"),
        ("EXPLORE", 0, "potential trained"),
        ("SELECT", 0, "exploration finished"),
        ("DFT", 1, "4 configurations selected"),
    ]
    assert (machine.state, machine.generation) == ("DFT", 1)


@pytest.mark.parametrize("max_generations", [1, 2, 3])
def test_max_generations_counts_trained_potentials(max_generations):
    machine = LoopMachine()
    machine.structures_ready()
    potentials = 0
    while machine.state == "DFT":
        to_select(machine)
        potentials += 1
        step = machine.selection_finished(select(max_generations=max_generations))
    assert potentials == max_generations
    assert (step.state, step.generation, step.reason) == (
        "DONE",
        max_generations - 1,
        "generation limit reached",
    )


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (select(n_selected=0), NOTHING_UNCERTAIN),
        (
            select(n_selected=0, max_generations=1, labels_done=50, dft_budget=50),
            "DFT budget exhausted",
        ),
        (select(n_selected=0, max_generations=1), "generation limit reached"),
        (select(max_generations=1, labels_done=50, dft_budget=50), "DFT budget exhausted"),
        (select(labels_done=50, dft_budget=50), "DFT budget exhausted"),
        (select(labels_done=51, dft_budget=50), "DFT budget exhausted"),
    ],
)
def test_select_ends_the_run_with_the_first_guard_that_fails(outcome, reason):
    machine = LoopMachine("SELECT", generation=0)
    step = machine.selection_finished(outcome)
    assert (step.state, step.generation, step.reason) == ("DONE", 0, reason)


@pytest.mark.parametrize("outcome", [select(labels_done=49, dft_budget=50), select(dft_budget=None)])
def test_select_goes_on_while_budget_is_left(outcome):
    assert LoopMachine("SELECT", generation=2).selection_finished(outcome).state == "DFT"


@pytest.mark.parametrize(
    ("outcome", "state", "reason"),
    [
        (select(validation_force_rmse=14.96, target_force_rmse=15), "ASSESS",
         "validation target met: validation force RMSE 15.0 meV/A <= loop.target_force_rmse 15 meV/A"),
        (select(validation_force_rmse=15.0, target_force_rmse=15, labels_done=60, dft_budget=60), "ASSESS",
         "validation target met: validation force RMSE 15.0 meV/A <= loop.target_force_rmse 15 meV/A"),
        (select(validation_force_rmse=15.1, target_force_rmse=15), "DFT", "3 configurations selected"),
        (select(validation_force_rmse=None, target_force_rmse=15), "DFT", "3 configurations selected"),
        (select(validation_force_rmse=3.0, target_force_rmse=None), "DFT", "3 configurations selected"),
        (select(validation_force_rmse=3.0, target_force_rmse=15, aimed=True), "DFT", "3 configurations selected"),
    ],
)
def test_the_validation_target_ends_the_loop_once_met_and_is_checked_first(outcome, state, reason):
    """The target outranks the other limits in the reason; it waits while the validation set is empty, and
    an aimed round's picks are labelled whatever the target says (a failed assessment outranks it)."""
    step = LoopMachine("SELECT", generation=1).selection_finished(replace(outcome, assess=True))
    assert (step.state, step.reason) == (state, reason)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (select(n_selected=0, exploration_gaps="2 of 8 walkers exploded (atoms 0 and 3 are 0.4 A apart)"),
         "exploration incomplete, nothing selected: 2 of 8 walkers exploded (atoms 0 and 3 are 0.4 A apart)"),
        (select(n_selected=0, n_candidates=5, exploration_gaps="1 of 8 walkers halted"),
         "exploration incomplete, nothing selected: 1 of 8 walkers halted"),
        (select(n_selected=0, n_candidates=5), "no new configurations: none of the 5 candidates was selected"),
        (select(n_selected=0), NOTHING_UNCERTAIN),
    ],
)
def test_nothing_uncertain_is_claimed_only_after_the_full_exploration(outcome, reason):
    step = LoopMachine("SELECT", generation=1).selection_finished(outcome)
    assert (step.state, step.reason) == ("DONE", reason)


@pytest.mark.parametrize(
    ("n_done", "n_failed", "fraction", "state"),
    [
        (10, 0, 0.0, "TRAIN"),
        (5, 5, 0.5, "TRAIN"),
        (4, 6, 0.5, "FAILED"),
        (9, 1, 0.0, "FAILED"),
        (0, 3, 1.0, "TRAIN"),
    ],
)
def test_failed_labels_within_tolerance_train_else_the_run_fails(n_done, n_failed, fraction, state):
    machine = LoopMachine("DFT", generation=1)
    step = machine.labels_finished(LabelOutcome(n_done, n_failed, fraction))
    assert (step.state, step.generation) == (state, 1)
    if state == "FAILED":
        assert step.reason.startswith("too many failed DFT labels")
        assert f"{n_failed} failed" in step.reason and f"{fraction:.0%}" in step.reason


@pytest.mark.parametrize("state", STATES)
def test_fail_reaches_failed_from_every_state(state):
    machine = LoopMachine(state, generation=3)
    step = machine.fail("pw.x is not installed")
    assert (step.state, step.generation, step.reason) == ("FAILED", 3, "pw.x is not installed")


@pytest.mark.parametrize(
    ("state", "report"),
    [
        ("INIT", LoopMachine.model_trained),
        ("DFT", LoopMachine.explored),
        ("TRAIN", LoopMachine.structures_ready),
        ("DONE", LoopMachine.model_trained),
        ("FAILED", LoopMachine.structures_ready),
    ],
)
def test_a_report_the_state_does_not_expect_is_refused(state, report):
    machine = LoopMachine(state, generation=1)
    with pytest.raises(RunError, match=f"cannot take '{report.__name__}' in state {state}"):
        report(machine)
    assert (machine.state, machine.generation) == (state, 1)


def test_an_unknown_state_is_refused():
    with pytest.raises(RunError, match="unknown loop state 'RELAX'"):
        LoopMachine("RELAX")


def test_every_guard_in_the_table_has_a_reason():
    assert {guard for *_, guards, _ in TABLE for guard in guards} == set(GUARD_FAILED)
    assert {dest for _, _, dest, _, _ in TABLE} - {"="} | {"INIT"} == set(STATES)


SCRIPT = [
    LoopMachine.structures_ready,
    lambda m: m.labels_finished(LabelOutcome(6, 1, 0.5)),
    LoopMachine.model_trained,
    LoopMachine.explored,
    lambda m: m.selection_finished(select(n_selected=2, labels_done=6, dft_budget=9)),
    lambda m: m.labels_finished(LabelOutcome(2, 0, 0.5)),
    LoopMachine.model_trained,
    LoopMachine.explored,
    lambda m: m.selection_finished(select(n_selected=2, labels_done=8, dft_budget=9)),
    lambda m: m.labels_finished(LabelOutcome(1, 1, 0.5)),
    LoopMachine.model_trained,
    LoopMachine.explored,
    lambda m: m.selection_finished(select(n_selected=2, labels_done=9, dft_budget=9)),
]


def test_replaying_the_log_restores_the_machine_after_every_step(tmp_path):
    machine = LoopMachine()
    with EventStore(tmp_path / EVENTS_FILE) as store:
        store.append("state.entered", machine.entered("run started"))
        for step in SCRIPT:
            store.append("state.entered", step(machine))
            run = fold(store.events())
            assert (run.state, run.generation) == (machine.state, machine.generation)
    assert (run.state, run.generation) == ("DONE", 2)
    assert run.n_events == len(SCRIPT) + 1


@pytest.mark.parametrize("crash_after", range(len(SCRIPT)))
def test_a_machine_rebuilt_from_the_folded_log_continues_like_the_original(tmp_path, crash_after):
    original = LoopMachine()
    expected = [step(original) for step in SCRIPT]

    with EventStore(tmp_path / EVENTS_FILE) as store:
        first_run = LoopMachine()
        for step in SCRIPT[:crash_after]:
            store.append("state.entered", step(first_run))
        resumed = LoopMachine.from_run_state(fold(store.events()))
        continued = [step(resumed) for step in SCRIPT[crash_after:]]
    assert continued == expected[crash_after:]


def test_a_log_without_state_events_starts_at_init():
    machine = LoopMachine.from_run_state(RunState())
    assert (machine.state, machine.generation) == ("INIT", 0)


def test_the_end_of_the_loop_is_assessed_before_done():
    machine = LoopMachine("DFT", 2)
    step = to_assess(machine)
    assert (step.state, step.generation, step.reason) == ("ASSESS", 2, NOTHING_UNCERTAIN)
    done = machine.assessed(verdict(usable=True))
    assert (done.state, done.generation) == ("DONE", 2) and done.reason.startswith("usable")


def test_a_failed_verdict_explores_aimed_at_it_while_rounds_last():
    machine = LoopMachine("DFT", 1)
    to_assess(machine)
    step = machine.assessed(verdict(usable=False, rounds_used=1, max_rounds=1))
    assert (step.state, step.generation) == ("EXPLORE", 1)
    assert "a0 +2.3%" in step.reason
    machine.explored()
    machine.selection_finished(select(n_selected=0, assess=True))
    final = machine.assessed(verdict(usable=False, rounds_used=2, max_rounds=1))
    assert final.state == "DONE"
    assert final.reason == "not usable (a0 +2.3%); assessment rounds used up"


@pytest.mark.parametrize(
    ("outcome", "limit"),
    [
        (verdict(False, labels_done=9, dft_budget=9), "DFT budget exhausted"),
        (verdict(False, max_generations=2), "generation limit reached"),
        (verdict(False, rounds_used=1, max_rounds=0), "assessment rounds used up"),
    ],
)
def test_a_failed_verdict_without_room_to_improve_ends_not_usable(outcome, limit):
    machine = LoopMachine("DFT", 1)
    to_assess(machine)
    step = machine.assessed(outcome)
    assert step.state == "DONE" and step.reason == f"not usable (a0 +2.3%); {limit}"


def test_with_assessment_off_the_loop_ends_done_without_it():
    machine = LoopMachine("DFT", 0)
    to_select(machine)
    assert machine.selection_finished(select(n_selected=0, assess=False)).state == "DONE"


@pytest.mark.parametrize("stage", ["INIT", "DFT", "TRAIN", "EXPLORE", "SELECT", "ASSESS"])
def test_retry_goes_from_failed_back_to_the_stage_that_failed(stage):
    machine = LoopMachine(stage, 2)
    machine.fail("pw.x not found")
    entered = machine.retry(stage, 2, "retrying")
    assert (entered.state, entered.generation, machine.state) == (stage, 2, stage)


def test_retry_is_only_allowed_from_failed_and_to_a_stage():
    with pytest.raises(RunError, match="cannot take 'retry' in state DFT"):
        LoopMachine("DFT").retry("DFT", 0, "retrying")
    with pytest.raises(RunError, match="only a stage of the loop"):
        LoopMachine("FAILED").retry("DONE", 0, "retrying")
