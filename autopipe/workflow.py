"""WorkflowManager: drives the loop machine, submits each stage's tasks through Parsl, records every step.

The event log is the checkpoint. Each stage handler is written to be re-entered after a crash: tasks whose
keys the log marks completed are not run again (unless files they left that a later step reads are missing or
damaged), tasks that were submitted but never finished are adopted from the result they left in their task
directory or else submitted again, and data (the structure database, the potential files) is written before
the event that points to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.io import read
from pydantic import ValidationError

from autopipe import __version__
from autopipe.apps.dft.settings import OPERATIONAL_KEYS
from autopipe.apps.explore import read_candidates
from autopipe.apps.structures import atoms_to_dict, has_vacuum
from autopipe.apps.structures.sources import is_reference
from autopipe.apps.train.dataset import validation_mask
from autopipe.assessment import Assessment, aimed_walkers
from autopipe.config import INPUT_WORDING, SystemConfig, written_keys
from autopipe.database import DatabaseManager
from autopipe.dispatch import RESULT_FILE, Dispatcher, execution, read_result
from autopipe.errors import AssessmentError, ConfigError, ExplorationError, UsageError
from autopipe.events import EVENTS_FILE, EventStore, RunState, canonical_json, fold
from autopipe.faults import environment_fault, writing
from autopipe.import_labels import Label, import_labels, read_labels
from autopipe.machine import AssessOutcome, LabelOutcome, LoopMachine, SelectOutcome
from autopipe.validation import format_validation_error

log = logging.getLogger("autopipe")

#: After a failed assessment every frame of an aimed walker is a candidate: the assessment, not the grade,
#: found the potential wrong there (the most extrapolative frames are still picked first).
AIMED_GAMMA_SELECT = 1e-3

_UUID_NAMESPACE = uuid.UUID("6f1c0a5e-3b7e-4d0c-9a51-2d8f8e0b7c11")


def task_key(kind: str, inputs: Any) -> str:
    """A deterministic key for a task: its kind and a hash of everything it computes from."""
    return f"{kind}-{hashlib.sha256(canonical_json(inputs).encode()).hexdigest()[:16]}"


def structure_uuid(key: str, index: int) -> str:
    """The uuid of the index-th structure a task produced: the same on every replay of that task."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{key}/{index}"))


def init_task(config: SystemConfig) -> tuple[str, dict[str, Any]]:
    """The INIT task's key and inputs; with `structure_uuid` they name the starting structures before
    they are built (the pre-flight check of the training split uses that)."""
    generator = config.structures.generator
    # `end_members` acts only on an alloy: elsewhere it must not change the key, which names the structures
    inert = {"generator": {"end_members"}} if generator is not None and generator.occupation is None else None
    inputs = {
        "settings": config.structures.model_dump(mode="json", exclude=inert),
        "elements": list(config.elements),
        "seed": config.loop.seed,
    }
    return task_key("init", inputs), inputs


class Project:
    """The files of one project directory (see docs/resume.md for the layout)."""

    def __init__(self, root: Path):
        self.root = root
        self.events = root / "events.sqlite"
        self.structures = root / "structures.db"
        self.potentials = root / "potentials"
        self.logs = root / "logs"

    def generation_dir(self, generation: int) -> Path:
        return self.root / "generations" / f"gen_{generation:03d}"

    def potential(self, generation: int, suffix: str) -> Path:
        return self.potentials / f"gen_{generation:03d}{suffix}"

    def relative(self, path: Path) -> str:
        """How events and task keys name a file of the project, so a moved project keeps its keys."""
        return str(path.relative_to(self.root))


def check_compatible(config: SystemConfig, store: EventStore, written: dict[str, bool]) -> SystemConfig:
    """The config a resumed run goes on with: the one it started with, read with today's schema.

    A key the user wrote (`written`, from `config.written_keys`) whose value is not the run's refuses the
    run with a ConfigError (nothing is written). A key that differs only by its default, which an upgrade may
    change, keeps the run's value, so its task keys stay those of the log; a setting new since the run
    started takes its default. How labels are run (the operational DFT keys) and the project directory are
    today's.
    """
    state = fold(store.events())
    if state.config_hash in (None, config.config_hash()):
        return config
    try:
        started = SystemConfig.model_validate({**state.config, "project_dir": config.project_dir})
    except ValidationError as err:  # a setting this version removed, or a value it no longer allows
        problems = format_validation_error(err, store.path, SystemConfig, INPUT_WORDING).splitlines()[1:-1]
        raise ConfigError(
            f"{config.project_dir} was started by another version of mlip-autopipe, with settings this version "
            f"does not read:\n" + "\n".join(problems) + "\nFinish the run with the version that started it "
            "(autopipe_version in its run.started event), or choose another --workdir for a new run."
        ) from err
    started_json = started.model_dump(mode="json")
    ignored = {"project_dir"} | {f"dft.{key}" for key in OPERATIONAL_KEYS}
    changed = [key for key in _changed_keys(started_json, config.model_dump(mode="json")) if key not in ignored]
    refused = [key for key in changed if _is_written(key, written)]
    if refused:
        raise ConfigError(
            f"{config.project_dir} was started from a different input: {', '.join(refused)} changed. Resume "
            "with the input the run was started with (its copy is input.yaml in the project directory), or "
            "choose another --workdir for a new run."
        )
    new = [key for key in _changed_keys(state.config, started_json) if key not in ignored]
    notes = []
    if changed:
        notes.append(f"kept the values this run started with for {', '.join(changed)} (today's default differs)")
    if new:
        notes.append(f"settings new since it started take their defaults: {', '.join(new)}")
    if notes:
        log.warning("Resuming: %s.", "; ".join(notes))
    operational = {key: getattr(config.dft, key) for key in OPERATIONAL_KEYS}
    return started.model_copy(update={"dft": started.dft.model_copy(update=operational)})


def _is_written(key: str, written: dict[str, bool]) -> bool:
    """Whether the user wrote `key`: the key itself, or a value (not a section) that holds it."""
    return key in written or any(written.get(key[:i]) for i, char in enumerate(key) if char == ".")


class WorkflowManager:
    """Runs (or resumes) one project to DONE or FAILED; the only writer of its event log."""

    def __init__(self, config: SystemConfig, site_name: str, executor_for: dict[str, str], input_text: str,
                 lammps_command: str | None = None):
        self.config = config
        self.lammps_command = lammps_command  # the site's, for exploration.engine lammps
        self.site_name = site_name
        self.project = Project(config.project_dir)
        self.input_text = input_text
        self.executor_for = executor_for
        self.store: EventStore
        self.db: DatabaseManager
        self.dispatcher: Dispatcher
        self.run_state: RunState
        self.machine: LoopMachine

    # --- start and resume ------------------------------------------------------------------------------

    def attach(self, store: EventStore) -> None:
        """Take the log, the database and the dispatcher; the run state is the log's fold."""
        self.store = store
        self.db = DatabaseManager(self.project.structures)
        self.dispatcher = Dispatcher(self.executor_for)
        self.run_state = fold(store.events())

    def open(self, store: EventStore, imported: list[Label] | None = None) -> None:
        """Record the start or the resumption of the run; write the project's files on first start, with
        the `imported` labels of another project (`--from-labels`)."""
        self.attach(store)
        if self.run_state.config_hash is None:
            self.project.potentials.mkdir(parents=True, exist_ok=True)
            config_json = self.config.model_dump(mode="json")
            system = json.dumps(config_json, indent=2)
            for path, text in ((self.project.root / "input.yaml", self.input_text),
                               (self.project.root / "system.json", system)):
                with writing(path):
                    path.write_text(text)
            self.db.set_metadata({"config": config_json, "config_hash": self.config.config_hash()})
            self.append(
                "run.started",
                {
                    "config_hash": self.config.config_hash(),
                    "config": config_json,
                    "autopipe_version": __version__,
                    "site": self.site_name,
                },
            )
            import_labels(self, imported or [])
        elif not self.run_state.finished:
            self.append(
                "run.resumed",
                {
                    "config_hash": self.config.config_hash(),
                    "site": self.site_name,
                    "pending_tasks": len(self.run_state.pending_keys),
                },
            )
        self.machine = LoopMachine.from_run_state(self.run_state)
        if self.run_state.state is None:
            self.append("state.entered", self.machine.entered("run started"))
        if self.run_state.outcome == "failed":
            self.retry_failed_stage()

    def retry_failed_stage(self) -> None:
        """Run the stage that failed again (its cause fixed since): its failed tasks are submitted anew,
        everything that finished is kept. Recorded as `run.retried`, then the stage is entered."""
        stage, generation = _failed_stage(self.store.events())
        kinds = STAGE_TASKS.get(stage, ())
        tasks = [
            key
            for key, task in self.run_state.tasks.items()
            if task.status == "failed" and task.generation == generation and task.kind in kinds
        ]
        reason = f"retrying {stage} of generation {generation}, which failed: {self.run_state.reason}"
        log.info(reason)
        self.append("run.retried", {"state": stage, "generation": generation, "reason": reason, "tasks": tasks})
        self.enter(self.machine.retry(stage, generation, reason))

    def append(self, kind: str, payload: Any) -> None:
        """Append one event durably and fold it into the run state kept in memory."""
        event = self.store.append(kind, payload)
        self.run_state = fold([event], self.run_state)
        log.debug("event %d %s %s", event.seq, kind, _brief(event.payload), extra={"event": event})

    # --- the loop ----------------------------------------------------------------------------------------

    def run(self) -> RunState:
        """Drive the machine until DONE or FAILED; returns the final run state."""
        stages = {
            "INIT": self.stage_init,
            "DFT": self.stage_dft,
            "TRAIN": self.stage_train,
            "EXPLORE": self.stage_explore,
            "SELECT": self.stage_select,
            "ASSESS": self.stage_assess,
        }
        while self.machine.state in stages:
            log.info("%s generation %d", self.machine.state, self.machine.generation)
            stages[self.machine.state](self.machine.generation)
        if not self.run_state.finished:
            outcome = "done" if self.machine.state == "DONE" else "failed"
            verdicts = [a for a in self.run_state.assessments if a["source"] == "run"]
            self.append(
                "run.finished",
                {"outcome": outcome, "reason": self.run_state.state_reason, "generation": self.machine.generation,
                 "usable": verdicts[-1]["usable"] if verdicts and outcome == "done" else None},
            )
        return self.run_state

    def enter(self, payload: Any) -> None:
        self.append("state.entered", payload)
        log.info("-> %s (generation %d): %s", payload.state, payload.generation, payload.reason)

    # --- tasks -------------------------------------------------------------------------------------------

    def run_tasks(self, kind: str, generation: int, specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Run every task of `specs` not yet finished, all at once, recording each as it ends.

        Each spec holds `key`, `label`, `kwargs`, `task_dir` and optionally `on_success(result)`, called
        (data first) before the `task.completed` event, and `needs(result)`: why the files a completed task
        left behind (given its recorded result) no longer serve the caller, or None. Such a task runs again,
        recorded as `task.retried` with that reason. Returns the outcome per key: the app's value, or
        ``{"failed": ...}`` for tasks that failed.
        """
        futures: dict[Future, dict[str, Any]] = {}
        unique: dict[str, dict[str, Any]] = {}
        for spec in specs:  # two structures of identical geometry share one DFT task
            unique.setdefault(spec["key"], spec)
        for spec in unique.values():
            if self._must_run(kind, generation, spec):
                futures[self.dispatcher.submit(kind, spec["kwargs"], spec["task_dir"])] = spec
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                spec = futures.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:
                    fault = environment_fault(exc, getattr(exc, "filename", None) or spec["task_dir"])
                    if fault is not None:  # not the task's failure: it runs again when the run is resumed
                        raise fault from exc
                    outcome = {"error": {"kind": type(exc).__name__, "message": str(exc)}, "wall_time": 0.0}
                self._finish(kind, generation, spec, {**outcome, "ran_on": execution(future, outcome)})
        return {spec["key"]: self._outcome(spec["key"]) for spec in specs}

    def _must_run(self, kind: str, generation: int, spec: dict[str, Any]) -> bool:
        """Whether to submit the task of `spec`, recording why: new (`task.submitted`), or again
        (`task.retried`) when an interrupted run left no result or a completed task's files are damaged.
        A result an interrupted run left behind is adopted instead."""
        record = self.run_state.tasks.get(spec["key"])
        ref = {"key": spec["key"], "kind": kind, "generation": generation}
        if record is None:
            self.append("task.submitted", {**ref, "label": spec["label"]})
            return True
        if record.status == "failed":
            return False
        if record.status == "completed":
            needs = spec.get("needs")
            reason = needs(record.result or {}) if needs else None
            if reason is None:
                return False
            log.warning("%s %s: %s; the task runs again", kind, spec["label"] or spec["key"], reason)
        else:
            left_behind = read_result(spec["task_dir"])
            if left_behind is not None:
                log.info("adopting the finished result of %s left by an interrupted run", spec["key"])
                self._finish(kind, generation, spec, left_behind)
                return False
            reason = "run resumed"
        self.append("task.retried", {**ref, "reason": reason})
        return True

    def _finish(self, kind: str, generation: int, spec: dict[str, Any], outcome: dict[str, Any]) -> None:
        base = {"key": spec["key"], "kind": kind, "generation": generation}
        value = outcome.get("value")
        failure = outcome.get("error") or _failure_in(value)
        if failure is None and spec.get("on_success"):
            spec["on_success"](value)
        if failure is None:
            result = _portable(_summary(value), self.project.root)
            self.append("task.completed", {**base, "result": result, "wall_time": outcome["wall_time"],
                                           "execution": outcome.get("ran_on", {})})
            return
        self.append(
            "task.failed",
            {
                **base,
                "failure_kind": failure["kind"],
                "message": failure["message"],
                "attempts": (value or {}).get("attempts", []),
                "execution": outcome.get("ran_on", {}),
            },
        )
        log.warning("%s %s failed (%s): %s", kind, spec["label"] or spec["key"], failure["kind"], failure["message"])

    def _outcome(self, key: str) -> dict[str, Any]:
        record = self.run_state.tasks[key]
        if record.status == "completed":
            return record.result or {}
        return {"failed": record.failure_kind, "message": record.message}

    def add_structures(self, structures: list[dict[str, Any]], key: str, *, generation: int,
                       config_type: str) -> list[str]:
        """Store the structures task `key` produced, then announce them once (a replay adds nothing)."""
        uuids = [
            self.db.add_structure(s, config_type=config_type, generation=generation,
                                  source=str(s["info"].get("source", "")), uuid=structure_uuid(key, i))
            for i, s in enumerate(structures)
        ]
        if uuids and not set(uuids) <= set(self.run_state.structures.get(generation, {}).get(config_type, [])):
            self.append("structures.added", {"generation": generation, "config_type": config_type, "uuids": uuids})
        return uuids

    def result_damage(self, task_dir: Path) -> str | None:
        """Why a completed task's result.json cannot be read back (a `needs` of `run_tasks`), or None."""
        return None if read_result(task_dir) is not None else self._damaged(task_dir / RESULT_FILE)

    def frames_damage(self, *paths: str | None) -> str | None:
        """Why one of the extxyz files a completed task wrote (project-relative; None: not written) cannot
        be read back, or None."""
        for path in paths:
            if path is not None and not _frames_intact(self.project.root / path):
                return self._damaged(self.project.root / path)
        return None

    def _damaged(self, path: Path) -> str:
        return f"result file missing or damaged: {self.project.relative(path)}"

    def task_dir(self, generation: int, stage: str, name: str) -> Path:
        return self.project.generation_dir(generation) / stage / name

    def dft_physics(self) -> dict[str, Any]:
        """The DFT settings that decide what a label computes (not how it is run)."""
        return {k: v for k, v in self.config.dft.model_dump(mode="json").items() if k not in OPERATIONAL_KEYS}

    @staticmethod
    def dft_key(kind: str, structure: dict[str, Any], physics: dict[str, Any]) -> str:
        """One DFT computation's key: the same geometry with the same physics is the same task."""
        return task_key(kind, {"structure": _geometry(structure), "dft": physics})

    def run_one(self, kind: str, generation: int, label: str, inputs: dict[str, Any], *,
                paths: tuple[str, ...] = (), workdir_name: str | None = None,
                needs: Callable[[dict[str, Any]], str | None] | None = None) -> dict[str, Any]:
        """Run (or reuse) the single task keyed by `inputs` and return its recorded result; `paths` name the
        inputs that are project files (given to the app as absolute paths), `needs` is `run_tasks`'s. Used by
        the assessment, so a failed task raises AssessmentError with the task's failure kind."""
        key = task_key(kind, {**inputs, "generation": generation})
        task_dir = self.task_dir(generation, kind, key)
        kwargs = {**inputs, **{name: str(self.project.root / inputs[name]) for name in paths}}
        if workdir_name:
            kwargs["workdir"] = str(task_dir / workdir_name)
        spec = {"key": key, "label": label, "kwargs": kwargs, "task_dir": task_dir, "needs": needs}
        outcome = self.run_tasks(kind, generation, [spec])[key]
        if "failed" in outcome:
            raise AssessmentError(f"{label} failed ({outcome['failed']}): {outcome['message']}", outcome["failed"])
        return outcome

    # --- stages ------------------------------------------------------------------------------------------

    def stage_init(self, generation: int) -> None:
        """Build the starting structures and put them in the database as generation 0."""
        key, kwargs = init_task(self.config)

        def store(structures: list[dict[str, Any]]) -> None:
            self.add_structures(structures, key, generation=0, config_type="initial")

        spec = {"key": key, "label": "initial structures", "kwargs": kwargs,
                "task_dir": self.task_dir(0, "init", key), "on_success": store}
        outcome = self.run_tasks("init", generation, [spec])[key]
        if "failed" in outcome:
            self.enter(self.machine.fail(f"the starting structures could not be built: {outcome['message']}"))
            return
        self.enter(self.machine.structures_ready())

    def stage_dft(self, generation: int) -> None:
        """Label every structure of the generation; all submitted at once, each recorded as it finishes."""
        settings = self.config.dft.model_dump(mode="json")
        physics = self.dft_physics()
        specs = []
        for type_uuids in self.run_state.structures.get(generation, {}).values():
            for structure_id in type_uuids:
                structure = atoms_to_dict(self.db.get(structure_id))
                key = self.dft_key("dft", structure, physics)

                def store(result: dict[str, Any], structure_id: str = structure_id, key: str = key) -> None:
                    self.db.add_label(structure_id, result, task_key=key)

                specs.append({"key": key, "label": structure_id, "on_success": store,
                              "kwargs": {"structure": structure, "settings": settings,
                                         "workdir": str(self.task_dir(generation, "dft", key) / "run")},
                              "task_dir": self.task_dir(generation, "dft", key)})
        outcomes = self.run_tasks("dft", generation, specs)
        n_failed = sum("failed" in o for o in outcomes.values())
        n_done = len(outcomes) - n_failed
        if generation not in self.run_state.datasets:
            self.append("dataset.extended", {"generation": generation, "n_new": n_done,
                                             "n_total": self.db.count_labels()})
        self.enter(self.machine.labels_finished(
            LabelOutcome(n_done=n_done, n_failed=n_failed,
                         max_failed_fraction=self.config.dft.max_failed_fraction)))

    def stage_train(self, generation: int) -> None:
        """Fit a potential on every label so far; copy it to potentials/gen_NNN.* before announcing it."""
        dataset_ids = sorted(r.label for r in self.run_state.labels_done())
        settings = self.config.training.model_dump(mode="json")
        key = task_key("train", {"generation": generation, "labels": dataset_ids, "training": settings,
                                 "elements": list(self.config.elements)})
        task_dir = self.task_dir(generation, "train", key)
        dataset = self.project.generation_dir(generation) / "train" / "dataset.extxyz"
        if key not in self.run_state.tasks:
            dataset.parent.mkdir(parents=True, exist_ok=True)
            self.db.export_extxyz(dataset, uuids=dataset_ids)
        previous_model = self.run_state.models.get(generation - 1)
        previous = str(self.project.root / previous_model["potential"]) if previous_model else None

        def publish(result: dict[str, Any]) -> None:
            _copy(result["potential"], self.project.potential(generation, ".yaml"))
            _copy(result["active_set"], self.project.potential(generation, ".asi"))
            if result.get("potential_yace"):
                _copy(result["potential_yace"], self.project.potential(generation, ".yace"))

        spec = {"key": key, "label": f"gen {generation} ({len(dataset_ids)} labels)", "on_success": publish,
                "kwargs": {"dataset": str(dataset), "settings": settings, "elements": list(self.config.elements),
                           "workdir": str(task_dir / "fit"), "initial_potential": previous},
                "task_dir": task_dir}
        result = self.run_tasks("train", generation, [spec])[key]
        if "failed" in result:
            self.enter(self.machine.fail(f"training failed ({result['failed']}): {result['message']}"))
            return
        if generation not in self.run_state.models:
            self.append("model.trained", {
                "generation": generation,
                "potential": self.project.relative(self.project.potential(generation, ".yaml")),
                "active_set": self.project.relative(self.project.potential(generation, ".asi")),
                "metrics": result["metrics"], "n_train": result["n_train"],
                "n_validation": result["n_validation"],
            })
        self.enter(self.machine.model_trained())

    def stage_explore(self, generation: int) -> None:
        """Run MD walkers with this generation's potential: the configured schedule, started in turn from every
        labelled structure, or (after a failed assessment) walkers aimed at what failed."""
        round_ = self.run_state.aim(generation)[0]
        outcomes = self.run_walkers(generation)
        if outcomes is None:
            return
        finished = [o for o in outcomes.values() if "failed" not in o]
        if not finished:
            self.enter(self.machine.fail("every MD walker failed"))
            return
        if self.run_state.explorations.get(generation, {}).get("round", -1) != round_:
            gammas = [o["max_gamma"] for o in finished if o.get("max_gamma") is not None]
            self.append("exploration.finished", {
                "generation": generation, "n_walkers": len(outcomes), "round": round_,
                "n_candidates": sum(o["n_candidates"] for o in finished),
                "max_gamma": max(gammas) if gammas else None,
                "halted": sum(o["status"] == "halted" for o in finished),
                "candidates": sorted(o["candidates"] for o in finished),
                "continuations": [o.get("last_trusted") for o in outcomes.values()],  # in schedule order
            })
        self.enter(self.machine.explored())

    def run_walkers(self, generation: int) -> dict[str, dict[str, Any]] | None:
        """The outcomes of the generation's walkers, in schedule order, run where not done (or done but with
        their files gone); None, with the loop FAILED, when a walker's start is gone."""
        try:
            specs = self.explore_specs(generation)
        except ExplorationError as err:
            self.enter(self.machine.fail(str(err)))
            return None
        return self.run_tasks("explore", generation, specs)

    def explore_specs(self, generation: int) -> list[dict[str, Any]]:
        """The walker tasks of the generation's exploration (its current round); a completed walker whose
        candidates or last trusted frame are gone runs again (`needs`). ExplorationError when a walker would
        continue from a frame that is gone (see `continuations`)."""
        model = self.run_state.models[generation]
        round_, aimed_at = self.run_state.aim(generation)
        settings = self.config.exploration.model_dump(mode="json")
        if aimed_at is not None:
            settings["gamma_select"] = AIMED_GAMMA_SELECT
            walkers = aimed_walkers(self.config, aimed_at)
        else:
            walkers = self.regular_walkers(generation)
        specs = []
        for index, walker in enumerate(walkers):
            seed = self.config.loop.seed * 100_003 + generation * 1_009 + round_ * 101 + index
            inputs = {**walker, "potential": model["potential"], "active_set": model["active_set"],
                      "settings": settings, "seed": seed}
            key = task_key("explore", {**inputs, "generation": generation})
            kwargs = {**inputs, "potential": str(self.project.root / model["potential"]),
                      "active_set": str(self.project.root / model["active_set"])}
            task_dir = self.task_dir(generation, "explore", f"walker_{round_}_{index:03d}")
            kwargs["workdir"] = str(task_dir / "md")
            if self.config.exploration.engine == "lammps":  # an operational input: not part of the key
                kwargs["lammps_command"] = self.lammps_command
            ensemble = "NVT" if walker["pressure"] is None else f"NPT {walker['pressure']:g} GPa"
            start = walker["structure"]["info"].get("source") or walker["structure"]["info"]["uuid"]
            specs.append({"key": key, "label": f"walker {index} at {walker['temperature']:g} K, {ensemble}, "
                                              f"from {start}",
                          "kwargs": kwargs, "task_dir": task_dir,
                          "needs": lambda r: self.frames_damage(r["candidates"], r.get("last_trusted"))})
        return specs

    def regular_walkers(self, generation: int) -> list[dict[str, Any]]:
        """The exploration schedule's walkers, each starting from the next labelled structure in turn, so
        successive generations start from every labelled structure (initial and selected) rather than two.
        With `continue_walkers`, a walker whose predecessor (same slot, previous generation's own exploration)
        ended with a trusted frame continues from that frame instead, so trajectories grow across generations.
        A start with vacuum (a slab) runs NVT at its slot's temperature: a barostat would close the gap.
        Validation structures are not starts: outside the active set, a walker from one can halt at its
        first frame, which is labelled already, and the generation would learn nothing."""
        labelled = sorted(r.label for r in self.run_state.labels_done())
        starting = {uuid for uuids in self.run_state.structures.get(0, {}).values() for uuid in uuids}
        references = {row.uuid for row in self.db.structures(generation=0) if is_reference(row.get("source", ""))}
        training = self.config.training
        held_out = validation_mask(labelled, training.test_fraction, training.seed,
                                   starting=[uuid in starting for uuid in labelled],
                                   always_train=[uuid in references for uuid in labelled])
        starts = [uuid for uuid, out in zip(labelled, held_out, strict=True) if not out] or labelled
        schedule = self.config.exploration.schedule()
        offset = generation * len(schedule)
        continued = self.continuations(generation, len(schedule))
        walkers = []
        for i, (temperature, pressure) in enumerate(schedule):
            atoms = continued[i] or self.db.get(starts[(offset + i) % len(starts)])
            walkers.append({"structure": atoms_to_dict(atoms), "temperature": temperature,
                            "pressure": None if has_vacuum(atoms) else pressure})
        return walkers

    def continuations(self, generation: int, n_walkers: int) -> list[Atoms | None]:
        """Per schedule slot, the frame the previous generation's walker last trusted, when walkers continue
        and that generation ran the same schedule (not an aimed round); None where a slot starts afresh.
        ExplorationError when a frame the log names is missing or damaged."""
        previous = self.run_state.explorations.get(generation - 1, {})
        paths = previous.get("continuations")  # one per slot of the same schedule; absent in older logs
        if not self.config.exploration.continue_walkers or previous.get("round") != 0 or not paths:
            return [None] * n_walkers
        frames: list[Atoms | None] = []
        for slot, path in enumerate(paths):
            if path is None:
                frames.append(None)
                continue
            if self.frames_damage(path):
                raise ExplorationError(
                    f"walker {slot} of generation {generation} continues from {path} (exploration."
                    f"continue_walkers), the last trusted frame of walker {slot} of generation {generation - 1}, "
                    "but that file is missing or damaged and the walker that wrote it cannot be run again: its "
                    "start depended on the labels of its generation. Restore the file from a backup and run "
                    f"again, or start a new project from these labels (--from-labels {self.project.root})."
                )
            frame = read(self.project.root / path, format="extxyz")
            atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
            atoms.info["source"] = f"walker {slot} of generation {generation - 1}, step {frame.info['step']}"
            frames.append(atoms)
        return frames

    def stage_select(self, generation: int) -> None:
        """Pick the next generation's structures from the walkers' candidates, within the DFT budget and
        never one already labelled (the labelled structures go to the task as a file)."""
        exploration = self.run_state.explorations[generation]
        round_, files = exploration["round"], exploration["candidates"]
        model = self.run_state.models[generation]
        labelled = sorted(r.label for r in self.run_state.labels_done())
        limit = max(0, self.config.loop.dft_budget - len(labelled))
        gamma_select = AIMED_GAMMA_SELECT if round_ else self.config.exploration.gamma_select
        settings = self.config.selection.model_dump(mode="json")
        if round_ and settings["method"] == "d_optimal":  # D-optimality would skip frames the active set
            settings["method"] = "max_gamma"              # spans, which is where the assessment found errors
        inputs = {"candidate_files": files, "settings": settings,
                  "gamma_select": gamma_select, "limit": limit, "potential": model["potential"],
                  "active_set": model["active_set"], "labelled": labelled,
                  "seed": self.config.loop.seed * 100_003 + generation * 1_009 + round_ * 101}
        key = task_key("select", {**inputs, "generation": generation})
        task_dir = self.task_dir(generation, "select", key)
        known = self.task_dir(generation, "select", f"{key}.labelled.extxyz")  # beside it: a task starts clean
        known.parent.mkdir(parents=True, exist_ok=True)
        self.db.export_extxyz(known, uuids=labelled)
        kwargs = {**inputs, "candidate_files": [str(self.project.root / f) for f in files],
                  "potential": str(self.project.root / model["potential"]),
                  "active_set": str(self.project.root / model["active_set"]), "labelled": str(known)}

        def store(result: dict[str, Any]) -> None:
            config_type = "aimed" if round_ else "md"
            whole = [s for s in result["selected"] if not s["info"]["embedded"]]
            cut = [s for s in result["selected"] if s["info"]["embedded"]]
            uuids = self.add_structures(whole, key, generation=generation + 1, config_type=config_type)
            uuids += self.add_structures(cut, f"{key}/embedded", generation=generation + 1,
                                         config_type="embedded")
            if self.run_state.selections.get(generation, {}).get("round", -1) != round_:
                self.append("selection.made", {"generation": generation, "uuids": uuids, "round": round_,
                                               "n_candidates": result["n_candidates"]})

        spec = {"key": key, "label": f"gen {generation}", "on_success": store,
                "kwargs": {**kwargs, "workdir": str(task_dir / "select")}, "task_dir": task_dir}
        # the last point at which the generation's walkers can run again: their files must serve SELECT and the
        # next generation's walkers, which continue from their last trusted frames
        left = [*files, *exploration.get("continuations", [])]
        damaged = key not in self.run_state.completed_keys and self.frames_damage(*left)
        if damaged and self.run_walkers(generation) is None:
            return
        outcome = self.run_tasks("select", generation, [spec])[key]
        if "failed" in outcome:
            self.enter(self.machine.fail(f"selection failed: {outcome['message']}"))
            return
        n_selected = len(self.run_state.selections[generation]["uuids"])
        self.enter(self.machine.selection_finished(self.select_outcome(generation, n_selected, len(labelled))))

    def select_outcome(self, generation: int, n_selected: int, labels_done: int) -> SelectOutcome:
        """What SELECT's stopping rules need: the limits, the validation target and this generation's
        validation force RMSE, and how far the exploration fell short of the configured schedule."""
        exploration = self.run_state.explorations[generation]
        validation = self.run_state.models[generation]["metrics"]["validation"]
        return SelectOutcome(
            n_selected=n_selected, labels_done=labels_done, dft_budget=self.config.loop.dft_budget,
            max_generations=self.config.loop.max_generations, assess=self.config.assess.enabled,
            n_candidates=exploration["n_candidates"], exploration_gaps=self.exploration_gaps(generation),
            validation_force_rmse=validation["force_rmse_mev_a"],
            target_force_rmse=self.config.loop.target_force_rmse, aimed=exploration["round"] > 0)

    def exploration_gaps(self, generation: int) -> str:
        """Why the generation's exploration covered less than the configured schedule ("" if it did not):
        an aimed round, or walkers that failed, exploded (that frame is dropped) or halted before their last
        step. Only a full exploration that finds nothing may end the loop as "no uncertain configurations"."""
        exploration = self.run_state.explorations[generation]
        if exploration["round"]:
            return f"round {exploration['round']} was aimed at a failed assessment, not the configured schedule"
        files = set(exploration["candidates"])
        walkers = [task.result or {} for task in self.run_state.tasks.values()
                   if task.kind == "explore" and task.generation == generation and task.status == "completed"
                   and (task.result or {}).get("candidates") in files]
        total = exploration["n_walkers"]
        gaps = [f"{total - len(walkers)} of {total} walkers failed"] if len(walkers) < total else []
        for status in ("exploded", "halted"):
            stopped = [w for w in walkers if w.get("status") == status]
            if stopped:
                why = f" ({stopped[0]['reason']})" if stopped[0].get("reason") else ""
                gaps.append(f"{len(stopped)} of {total} walkers {status}{why}")
        return "; ".join(gaps)

    def stage_assess(self, generation: int) -> None:
        """The potential against fresh DFT; DONE when usable, else EXPLORE aimed at what failed, or DONE
        not usable when rounds, generations or budget are used up."""
        try:
            payload = self.assess(generation, source="run")
        except AssessmentError as err:
            self.enter(self.machine.fail(f"the assessment could not be made ({err.kind}): {err}"))
            return
        self.enter(self.machine.assessed(AssessOutcome(
            usable=payload["usable"], reason=payload["reason"], rounds_used=self.run_state.failed_rounds(),
            max_rounds=self.config.assess.max_rounds, labels_done=len(self.run_state.labels_done()),
            dft_budget=self.config.loop.dft_budget, max_generations=self.config.loop.max_generations)))

    def assess(self, generation: int, source: str) -> dict[str, Any]:
        """Assess generation `generation`'s potential and record `assessment.finished` (once per round)."""
        if source == "run" and self.run_state.verdict is not None:  # recorded before an interruption
            return self.run_state.verdict
        round_ = self.run_state.failed_rounds() if source == "run" else 0
        payload = Assessment(self, generation, round_, source).run()
        self.append("assessment.finished", payload)
        return payload


#: The kinds of task each stage submits: the failed ones are what a retry of that stage runs again.
STAGE_TASKS = {"INIT": ("init",), "DFT": ("dft",), "TRAIN": ("train",), "EXPLORE": ("explore",),
               "SELECT": ("select",), "ASSESS": ("reference", "assess_md", "assess")}


def _failed_stage(events: list[Any]) -> tuple[str, int]:
    """The stage (and its generation) the loop was in when it entered FAILED the last time."""
    entered = [e.payload for e in events if e.kind == "state.entered"]
    last = next(p for p in reversed(entered) if p["state"] != "FAILED")
    return last["state"], last["generation"]


def _copy(source: str, destination: Path) -> None:
    """Copy a task's file into the project; a full disk names the destination (shutil names the source)."""
    with writing(destination):
        shutil.copyfile(source, destination)


def _frames_intact(path: Path) -> bool:
    """Whether `path` reads as extxyz frames (an empty file: none), as SELECT and the assessment read it."""
    try:
        read_candidates(path)
    except Exception:  # noqa: BLE001 - ase.io raises anything from OSError to StopIteration on a bad file
        return False
    return True


def _geometry(structure: dict[str, Any]) -> dict[str, Any]:
    return {k: structure[k] for k in ("numbers", "positions", "cell", "pbc")}


def _failure_in(value: Any) -> dict[str, str] | None:
    """A DFT result that did not give a label ("failed" or "rejected") is a failed task."""
    if isinstance(value, dict) and value.get("status") in ("failed", "rejected"):
        failure = value.get("failure") or {}
        return {"kind": failure.get("kind", value["status"]), "message": failure.get("message", value["status"])}
    return None


def _summary(value: Any) -> dict[str, Any]:
    """What a `task.completed` event keeps of a result: everything but bulky per-atom arrays."""
    if isinstance(value, list):
        return {"n_items": len(value)}
    return {k: v for k, v in (value or {}).items() if k not in ("forces", "selected", "stress")}


def _portable(value: Any, root: Path) -> Any:
    """`value` with absolute paths inside the project directory made relative to it."""
    if isinstance(value, dict):
        return {k: _portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, root) for v in value]
    if isinstance(value, str) and value.startswith(f"{root}/"):
        return value[len(str(root)) + 1:]
    return value


def _brief(payload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int, float)))[:200]


def _changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ between two JSON documents."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            path
            for key in sorted(set(before) | set(after))
            for path in _changed_keys(before.get(key), after.get(key), f"{prefix}{key}.")
        ]
    return [] if before == after else [prefix.rstrip(".")]



def run_project(
    input_path: Path, site_name: str, workdir: Path | None = None, from_labels: Path | None = None
) -> tuple[RunState, Path]:
    """Create or resume the project `input_path` describes and run it to DONE or FAILED; a new project
    starts with the finished labels of the project `from_labels` (docs/resume.md).

    Returns the final run state and the project directory.

    Every check that can refuse the run (input, site, a second concurrent run, an incompatible input)
    happens before anything is written to the project.
    """
    from autopipe.config import load_config
    from autopipe.preflight import check_before_run
    from autopipe.project_files import check_intact, check_pair, check_potentials

    config = load_config(input_path, workdir)
    site = _site(site_name)
    check_before_run(config, site, imports=from_labels is not None)
    config = _with_site_command(config, site)
    project = Project(config.project_dir)
    n_events = 0
    if project.events.exists():
        with EventStore.open_existing(project.events) as existing:
            n_events = check_intact(existing)
            config = check_compatible(config, existing, _written(input_path, project.root / "input.yaml"))
            state = fold(existing.events())
            if state.outcome != "done":  # a run that goes on (unfinished, or FAILED and retried)
                check_potentials(project.root, state.models.values(), "the run cannot go on without them")
    check_pair(project.root, n_events)
    imported = None
    if from_labels is not None:
        if n_events:
            raise UsageError(
                f"--from-labels brings labels into a new project, but {project.root} has already started; "
                "choose another --workdir."
            )
        imported = read_labels(from_labels, config)
    project.root.mkdir(parents=True, exist_ok=True)
    with _session(config, site, input_path.read_text()) as (manager, store):
        manager.open(store, imported)
        if manager.run_state.finished:
            return manager.run_state, project.root
        with _parsl(site, project):
            return manager.run(), project.root


def assess_project(project_dir: Path, site_name: str, generation: int | None,
                   settings: dict[str, Any] | None = None, dft_timeout: float | None = None) -> dict[str, Any]:
    """Assess one generation's potential of an existing project (default: the newest) against fresh DFT.

    `settings` replaces the run's `assess:` section (e.g. a larger MD-check cell); `dft_timeout` replaces
    the run's `dft.timeout` (operational: no key changes) for cells larger than the run's. Reference labels
    the run (or an earlier `assess`) computed are reused; the verdict is appended to the log as an
    `assessment.finished` event with source "cli" and returned.
    """
    from autopipe.project_files import check_intact, check_potentials

    project = Project(project_dir.absolute())
    if not project.events.is_file():
        raise UsageError(f"{project_dir} holds no event log ({EVENTS_FILE}): is it a project directory?")
    with EventStore.open_existing(project.events) as existing:
        check_intact(existing)  # the verdict is appended: never to a damaged log
        state = fold(existing.events())
    if not state.models:
        raise UsageError(f"{project_dir} has no trained potential yet: there is nothing to assess.")
    generation = max(state.models) if generation is None else generation
    if generation not in state.models:
        raise UsageError(
            f"--generation {generation}: {project_dir} has potentials of generations "
            f"{', '.join(map(str, sorted(state.models)))}."
        )
    check_potentials(project.root, [state.models[generation]], f"generation {generation} cannot be assessed")
    site = _site(site_name)
    stored = {**state.config, "project_dir": project.root}
    if settings is not None:
        stored["assess"] = settings
    if dft_timeout is not None:
        stored["dft"] = {**stored["dft"], "timeout": dft_timeout}
    config = _with_site_command(SystemConfig.model_validate(stored), site)
    with _session(config, site, (project.root / "input.yaml").read_text()) as (manager, store):
        manager.attach(store)
        with _parsl(site, project):
            return manager.assess(generation, source="cli")


def _written(*inputs: Path) -> dict[str, bool]:
    """The keys the user wrote: in today's input and in the project's copy of the input the run started with
    (a key deleted from the input since is a change of the user's, not of a default)."""
    written: dict[str, bool] = {}
    for path in inputs:
        if path.is_file():
            for key, holds_value in written_keys(path).items():
                written[key] = written.get(key, False) or holds_value
    return written


def _site(site_name: str) -> Any:
    from autopipe.executors import load_site

    return load_site(site_name)


def _with_site_command(config: SystemConfig, site: Any) -> SystemConfig:
    """The site's pw.x command (with its launcher) replaces the input's, for engine qe."""
    if site.dft_command and config.dft.engine == "qe":
        return config.model_copy(update={"dft": config.dft.model_copy(update={"command": site.dft_command})})
    return config


@contextmanager
def _session(config: SystemConfig, site: Any, input_text: str) -> Iterator[tuple[WorkflowManager, EventStore]]:
    """The run lock, the open log and a manager for the project; logging to logs/autopipe.log."""
    from autopipe.events import run_lock
    from autopipe.logs import log_to_file

    project = Project(config.project_dir)
    with run_lock(project.root), EventStore(project.events) as store:
        log_to_file(project.logs / "autopipe.log")
        executor_for = {kind: site.executor_for(kind) for kind in ("dft", "train", "md", "light")}
        yield WorkflowManager(config, site.name, executor_for, input_text, site.lammps_command), store


@contextmanager
def _parsl(site: Any, project: Project) -> Iterator[None]:
    """Parsl loaded with the site's executors for the duration of the block."""
    import parsl

    from autopipe.apps.process import stop_all
    from autopipe.executors import build_parsl_config, cancel_leftover_jobs

    cancel_leftover_jobs(project.logs / "parsl")  # blocks a killed driver left queued or running
    dfk = parsl.load(build_parsl_config(site, project.logs / "parsl"))
    try:
        yield
    except KeyboardInterrupt:
        stop_all()  # programs of tasks running in this process (site threads); workers' die with them
        raise
    finally:
        dfk.cleanup()
        parsl.clear()
