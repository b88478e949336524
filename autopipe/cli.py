"""The `mlip-auto` command line.

Every command runs inside one error boundary (`ErrorBoundary`, the app's click group): an `AutopipeError`
becomes one clean paragraph on stderr and its exit code (2 bad input or usage, 1 run-time failure),
Ctrl-C exits 130, a closed stdout (`| head`) ends quietly with 141, and a traceback is shown only with
`mlip-auto --debug ...`. New commands only need `@app.command()` (or `app.add_typer(sub_app, name=...)`);
they are inside the boundary automatically.
"""

import json
import os
import signal
import sys
import webbrowser
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from ase.symbols import Symbols
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup
from typer.exceptions import TyperException

from autopipe import report_console
from autopipe.apps.dft import choose_parameters
from autopipe.apps.explore.lammps import engine_line
from autopipe.config import SystemConfig, load_config
from autopipe.database import DatabaseManager
from autopipe.errors import AutopipeError, UsageError
from autopipe.events import EVENTS_FILE, EventStore, RunState
from autopipe.executors import load_site, resources_text
from autopipe.faults import environment_fault
from autopipe.limits import Estimate, estimate
from autopipe.logs import log_to_console
from autopipe.output_paths import EXAMPLE_INPUT, EXPORT, EXPORT_WRITER, check_output, replace_atomically
from autopipe.preflight import check_before_run
from autopipe.progress import show_progress
from autopipe.project_reader import read_log
from autopipe.replay import replay, state_summary
from autopipe.report import REPORT_FILE, build_report
from autopipe.report_figures import log_warning
from autopipe.workflow import assess_project, run_project

#: Exit code of `run` and `assess` when the potential was assessed as not usable (docs/assessment.md).
NOT_USABLE = 3
#: Exit code of the read-only commands when they showed what they could of a damaged event log.
DAMAGED_LOG = 4
#: Exit code when the reader of stdout went away (`| head`): what a shell reports for SIGPIPE (128 + 13).
CLOSED_PIPE = 141


class _Console(Console):
    """Rich's console, except that a closed stdout is left to the error boundary (rich exits 1)."""

    def on_broken_pipe(self) -> None:
        raise  # noqa: PLE0704 - called inside rich's `except BrokenPipeError`


console = _Console()
err_console = Console(stderr=True)


class ErrorBoundary(TyperGroup):
    """The click group of `app`: maps exceptions from any command to a message and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a closed pipe shows here, inside the boundary, not at Python's exit
        except BrokenPipeError:
            _closed_pipe()
        except (TyperException, typer.Exit, typer.Abort):
            raise  # usage errors and explicit exits: Typer prints them and exits (2 for usage)
        except AutopipeError as err:
            _fail(ctx, str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "Interrupted. Everything finished so far is kept.", 130)
        except Exception as err:  # noqa: BLE001 - a bug: still one paragraph, the traceback with --debug
            fault = environment_fault(err)
            if fault is not None:  # a full disk or a refused write outside the write sites that name theirs
                _fail(ctx, str(fault), fault.exit_code)
            _fail(
                ctx,
                f"Unexpected internal error: {type(err).__name__}: {err}. "
                "Re-run with `mlip-auto --debug ...` to see the traceback.",
                1,
            )


def _closed_pipe() -> NoReturn:
    """Stdout's reader went away (`mlip-auto events list P | head`): normal use, so no message. Stdout is
    pointed at /dev/null first, so that Python's flush at exit has nowhere to fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(CLOSED_PIPE)


def _fail(ctx: typer.Context, message: str, exit_code: int) -> None:
    """Print the current exception's message (and traceback if --debug), then exit with `exit_code`."""
    if ctx.params.get("debug"):
        err_console.print_exception()
    err_console.print(Text("Error: ", style="bold red") + Text(message), soft_wrap=True)
    raise typer.Exit(exit_code)


app = typer.Typer(
    cls=ErrorBoundary,
    name="mlip-auto",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


WorkdirOption = Annotated[
    Path | None, typer.Option("--workdir", help="Project directory (default: <input dir>/<project.name>).")
]


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks of errors.")] = False,
) -> None:
    """Unattended active learning of ACE potentials: DFT labels, Pacemaker fits, MD exploration."""


SiteOption = Annotated[str, typer.Option("--site", help="Site name in site-configs/ or a site YAML path.")]


@app.command()
def validate(
    input_file: Annotated[Path, typer.Argument(metavar="INPUT", help="The input.yaml to check.")],
    site: SiteOption = "local",
    workdir: WorkdirOption = None,
) -> None:
    """Check INPUT and the site it would run on (resources per kind, impossible combinations, programs), and
    show what a run would do and cost; writes nothing."""
    config = load_config(input_file, workdir)
    site_config = load_site(site)
    qe_command = config.dft.command if config.dft.engine == "qe" else None
    console.print(resources_text(site_config, qe_command, config.dft.timeout), soft_wrap=True)
    structures = check_before_run(config, site_config)
    console.print(_summary(config, structures, engine_line(config.exploration.engine, site_config.lammps_command)))
    console.print(_cost(estimate(config, structures)))
    if config.dft.engine == "qe":
        console.print(_dft_parameters(config, structures))
    console.print(f"Project directory (not created by validate): {config.project_dir}", soft_wrap=True)
    console.print(Text(f"{input_file} is valid.", style="bold green"))


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the example input.")] = Path("input.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example input.yaml to start from."""
    target = check_output(path, EXAMPLE_INPUT, force)
    template = resources.files("autopipe").joinpath("templates/input.yaml").read_text(encoding="utf-8")
    try:
        with replace_atomically(target) as handle:
            handle.write(template)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}.") from err
    console.print(f"Wrote {path}. Edit it, then check it with: mlip-auto validate {path}", soft_wrap=True)


@app.command()
def run(
    input_file: Annotated[Path, typer.Argument(metavar="INPUT", help="The project's input.yaml.")],
    site: SiteOption = "local",
    workdir: WorkdirOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every event appended.")] = False,
    from_labels: Annotated[
        Path | None,
        typer.Option("--from-labels", help="Start a new project with this project's finished DFT labels."),
    ] = None,
) -> None:
    """Run the active-learning loop of INPUT to the end; on an existing project, resume it."""
    log_to_console(verbose, err_console)
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's or a user's `kill`: stop like Ctrl-C
    with show_progress(err_console, verbose):
        state, project = run_project(input_file, site, workdir, from_labels)
    if state.models:
        console.print(_generations_table(state))
    verdicts = [a for a in state.assessments if a["source"] == "run"]
    if verdicts:
        console.print(_assessment_table(verdicts[-1]))
    outcome = "DONE" if state.outcome == "done" else "FAILED"
    usable = not verdicts or verdicts[-1]["usable"]
    style = "bold green" if outcome == "DONE" and usable else "bold red"
    console.print(Text(f"{outcome}: {state.reason}", style=style), soft_wrap=True)
    console.print(
        f"generation {state.generation}, {len(state.labels_done())} labels "
        f"({len(state.labels_failed())} failed), {len(state.models)} potentials in {project / 'potentials'}",
        soft_wrap=True,
    )
    if outcome != "DONE":
        raise typer.Exit(1)
    if not usable:
        raise typer.Exit(NOT_USABLE)


@app.command()
def assess(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    generation: Annotated[
        int | None, typer.Option("--generation", min=0, help="Whose potential (default: the newest).")
    ] = None,
    site: Annotated[str, typer.Option("--site", help="Site name in site-configs/ or a site YAML path.")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Assess a potential of PROJECT against fresh DFT; exit 0 if usable, 3 if not (docs/assessment.md)."""
    log_to_console(False, err_console)
    signal.signal(signal.SIGTERM, _interrupt)
    verdict = assess_project(project, site, generation)
    if as_json:
        print(json.dumps(verdict, indent=1))
    else:
        console.print(_assessment_table(verdict))
    if not verdict["usable"]:
        raise typer.Exit(NOT_USABLE)


@app.command()
def md(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    structure: Annotated[Path, typer.Option("--structure", help="Starting structure (any file ase.io.read reads).")],
    steps: Annotated[int, typer.Option("--steps", help="MD steps (at most the limit on exploration.steps).")],
    temperature: Annotated[float, typer.Option("--temperature", help="Kelvin (as exploration.temperatures).")],
    pressure: Annotated[
        float | None, typer.Option("--pressure", help="GPa: NPT at this pressure (default: NVT).")
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="ase or lammps (default: the project's exploration.engine).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the velocities and the thermostat.")] = 0,
    site: SiteOption = "local",
) -> None:
    """Production MD with PROJECT's newest potential, streaming the extrapolation grade; frames where it
    extrapolates are kept in PROJECT/md/run_NNN/candidates.extxyz for a later run (docs/exploration.md).
    Ctrl-C stops it at the next check, keeping what ran."""
    from autopipe.md import run_md

    log_to_console(False, err_console)
    signal.signal(signal.SIGTERM, _interrupt)

    def show(row: dict[str, float]) -> None:
        console.print(f"step {row['step']:>8.0f}  max gamma {row['max_gamma']:>9.3g}  "
                      f"T {row['temperature_K']:>7.1f} K  V {row['volume_per_atom']:.3f} A^3/atom")

    result = run_md(project, structure, steps=steps, temperature=temperature, pressure=pressure, engine=engine,
                    seed=seed, lammps_command=load_site(site).lammps_command, on_row=show)
    how = "ASE" if result["engine"] == "ase" else f"LAMMPS ({result['path']}: {result['lammps']})"
    console.print(
        f"{result['status']} after {result['steps_done']} steps with the generation {result['generation']} "
        f"potential, {how}; largest max gamma {_number(result['max_gamma'])}. "
        f"{result['n_candidates']} extrapolative frames in {result['candidates']}"
        + (f" ({result['reason']})" if result["reason"] else ""),
        soft_wrap=True,
    )


def _assessment_table(verdict: dict[str, Any]) -> Table:
    """Each number against fresh DFT, its tolerance and whether it passed; the verdict as the caption."""
    word = "usable" if verdict["usable"] else "not usable"
    table = Table("property", "DFT", "potential", "error", "tolerance", "", "note",
                  title=f"Assessment of generation {verdict['generation']} against fresh DFT", title_justify="left",
                  caption=f"{word}: {verdict['reason']}", caption_justify="left")
    for row in verdict["rows"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        error = "-" if row["error_percent"] is None else f"{row['error_percent']:+.1f}%"
        mark = Text("ok", style="green") if row["passed"] else Text("FAIL", style="bold red")
        table.add_row(row["name"], _number(row["dft"]) + unit if row["dft"] is not None else "-",
                      _number(row["potential"]) + unit if row["potential"] is not None else "-",
                      error, row["tolerance"], mark, row["note"])
    return table


def _generations_table(state: RunState) -> Table:
    """Is the potential getting better? Validation errors and exploration per generation."""
    table = Table("generation", "labels", "val. force RMSE (meV/A)", "val. energy RMSE (meV/atom)",
                  "MD max gamma", "selected", title="Generations", title_justify="left")
    for generation, model in sorted(state.models.items()):
        validation = model["metrics"].get("validation", {})
        explored = state.explorations.get(generation, {})
        selection = state.selections.get(generation)
        table.add_row(
            str(generation),
            str(model["n_train"] + model["n_validation"]),
            _number(validation.get("force_rmse_mev_a")),
            _number(validation.get("energy_rmse_mev_atom")),
            _number(explored.get("max_gamma")),
            str(len(selection["uuids"])) if selection else "-",
        )
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def export(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    output: Annotated[Path, typer.Argument(help="The extended XYZ file to write.")],
    all_structures: Annotated[
        bool, typer.Option("--all", help="Also structures without a DFT label (failed or pending).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a file that is not an export.")] = False,
) -> None:
    """Write PROJECT's labelled structures (energies, forces, stresses) to an extended XYZ file."""
    database = project / "structures.db"
    if not database.is_file():
        raise UsageError(f"{project} holds no structure database (structures.db): is it a project directory?")
    target = check_output(output, EXPORT, force)
    try:
        count = DatabaseManager(database).export_extxyz(
            target, labelled_only=not all_structures, written_by=EXPORT_WRITER
        )
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror}.") from err
    console.print(f"Wrote {count} structures to {output}.", soft_wrap=True)


@app.command()
def status(
    project: Annotated[Path, typer.Argument(help="The project directory.")] = Path("."),
    html: Annotated[Path | None, typer.Option("--html", help="Where to write the report "
                                                            "(default: PROJECT/report/status.html).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's figures as JSON.")] = False,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in a web browser.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a file that is not a report.")] = False,
) -> None:
    """Write PROJECT's HTML status report and print its key figures; read-only, safe while a run writes.
    Exit 4 if the event log is damaged: the report then shows the events before the damage."""
    path = html or project / REPORT_FILE
    figures = build_report(project, path, force)
    with _naming_damage(log_warning(figures)):
        if as_json:
            print(json.dumps({**figures, "html": str(path)}, indent=1))
        else:
            for table in report_console.summary(figures):
                console.print(table)
            console.print(f"Report: {path}", soft_wrap=True)
        if open_browser:
            webbrowser.open(path.resolve().as_uri())


@contextmanager
def _naming_damage(warning: str) -> Iterator[None]:
    """Around what a read-only command shows: a damaged log's `warning` first (red, on stderr), so that it
    is not lost below the output, and exit `DAMAGED_LOG` after it, so that scripts notice."""
    if warning:
        err_console.print(Text(warning, style="bold red"), soft_wrap=True)
    yield
    if warning:
        raise typer.Exit(DAMAGED_LOG)


events_app = typer.Typer(help="Read and check a project's event log.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("list")
def events_list(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    kind: Annotated[str | None, typer.Option("--kind", help="Only events of this kind, e.g. task.failed.")] = None,
    last: Annotated[int | None, typer.Option("--last", min=1, help="Only the last N events.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events after this seq, or from this UTC time (ISO).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print them as JSON: {log_intact, first_bad_seq, events}.")
    ] = False,
) -> None:
    """Print the events of PROJECT, oldest first; on a damaged log every readable row, and exit 4."""
    after, start = _since(since)
    log = read_log(project)
    selected = [e for e in log.select(after=after, kind=kind) if start is None or e.time >= start]
    selected = selected[-last:] if last else selected
    with _naming_damage(log.damage_message()):
        if as_json:
            print(json.dumps({**log.integrity(), "events": [e._asdict() for e in selected]}, indent=1))
            return
        table = Table("seq", "time (UTC)", "kind", "payload", title=f"{project} events", title_justify="left")
        for event in selected:
            table.add_row(str(event.seq), event.time[:19], event.kind, Text(_payload_text(event.payload)))
        console.print(table)


def _since(value: str | None) -> tuple[int, str | None]:
    """--since as (events after this seq, events from this UTC time in the log's spelling)."""
    if value is None:
        return 0, None
    if value.isdigit():
        return int(value), None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since {value!r} is neither a seq number nor an ISO 8601 time such as 2026-11-29T14:00"
        ) from None
    return 0, (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


@events_app.command("show")
def events_show(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    seq: Annotated[int, typer.Argument(min=1, help="The event's seq number.")],
) -> None:
    """Print one event of PROJECT in full (payload, time, hashes) as JSON; exit 4 if the log is damaged."""
    log = read_log(project)
    found = log.select(after=seq - 1, until=seq)
    if not found:
        raise UsageError(f"the event log of {project} has no event {seq}; `mlip-auto events list` shows them")
    with _naming_damage(log.damage_message()):
        print(json.dumps({**found[0]._asdict(), **log.integrity()}, indent=2))


@events_app.command("replay")
def events_replay(
    project: Annotated[Path, typer.Argument(help="The project directory.")],
    until: Annotated[
        int | None, typer.Option("--until", min=1, help="Replay events 1..SEQ (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """The run state after event SEQ: state, generation, dataset, models, pending tasks; on a damaged log the
    state after the last event before the damage, and exit 4."""
    log = read_log(project)
    summary = {**state_summary(replay(log, until)), **log.integrity()}
    with _naming_damage(log.damage_message()):
        _show_replay(project, summary, as_json)


def _show_replay(project: Path, summary: dict[str, Any], as_json: bool) -> None:
    """`events replay`'s output: the summary as JSON, or as a table."""
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    table = Table(title=f"{project} after event {summary['seq']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    pending = [f"{t['kind']} gen {t['generation']} {t['label'] or t['key']}"
               for t in summary["pending_tasks"]]
    for name, value in {
        "state": f"{summary['state']} (generation {summary['generation']}) {summary['state_reason']}".strip(),
        "finished": f"{summary['outcome']}: {summary['reason']}" if summary["finished"] else "no",
        "dataset": f"{summary['structures']} structures, {summary['labels_done']} labels "
                   f"({summary['labels_failed']} failed)",
        "models": ", ".join(summary["models"].values()) or "-",
        "pending tasks": "\n".join(pending) or "-",
    }.items():
        table.add_row(name, Text(value))
    console.print(table)


@events_app.command("verify")
def events_verify(project: Annotated[Path, typer.Argument(help="The project directory.")]) -> None:
    """Check the hash chain of PROJECT's log: exit 0 if intact, 1 with the first bad seq otherwise."""
    with EventStore.open_existing(project / EVENTS_FILE) as store:
        report = store.verify()
    if report.ok:
        console.print(Text(f"OK: {report.n_events} events, hash chain intact.", style="bold green"))
        return
    console.print(
        Text(f"BAD at seq {report.first_bad_seq}: {report.reason}", style="bold red"), soft_wrap=True
    )
    raise typer.Exit(1)


def _payload_text(payload: dict[str, Any], width: int = 160) -> str:
    text = ", ".join(f"{k}={v}" for k, v in payload.items() if k != "config")
    return text if len(text) <= width else text[: width - 3] + "..."


def _dft_parameters(config: SystemConfig, structures: list[dict[str, Any]]) -> Table:
    """The pw.x parameters the heuristics choose for each starting structure (docs/dft.md has the rules)."""
    settings = config.dft.model_dump(mode="json")
    table = Table("structure", "ecutwfc / ecutrho (Ry)", "k-points", "smearing", "spin", "conv_thr (Ry)",
                  title="DFT parameters chosen per starting structure", title_justify="left")
    for structure in structures:
        p = choose_parameters(structure, settings)
        spin = "off" if p["nspin"] == 1 else ", ".join(f"{el} {m:g}" for el, m in p["starting_magnetization"].items())
        table.add_row(
            Text(f"{Symbols(structure['numbers']).get_chemical_formula()} {structure['info'].get('source', '')}"),
            f"{p['ecutwfc']:g} / {p['ecutrho']:g}",
            "x".join(map(str, p["kpts"])),
            f"{p['smearing']} {p['degauss']:g}",
            spin,
            f"{p['conv_thr']:.1e}",
        )
    return table


def _cost(estimate: Estimate) -> Table:
    """The size of the run next to the limits `mlip-auto` enforces (docs/input-reference.md)."""
    table = Table("quantity", "at most", "limit", title="Cost estimate", title_justify="left")
    for row in estimate.rows():
        table.add_row(*row)
    return table


def _summary(config: SystemConfig, structures: list[dict[str, Any]], md_engine: str) -> Table:
    """What the run will do, as the user would check it before starting; `md_engine` says which MD engine
    (and, for LAMMPS, which path) the walkers would use on this machine."""
    formulas = Counter(Symbols(s["numbers"]).get_chemical_formula() for s in structures)
    dft = config.dft
    if dft.engine == "qe":
        pseudos = ", ".join(f"{el}: {dft.pseudopotentials[el]}" for el in config.elements)
        dft_text = (
            f"Quantum ESPRESSO ({dft.command}), accuracy {dft.accuracy}\n{pseudos}\nin {dft.pseudo_dir}"
        )
    else:
        dft_text = "EMT (ASE's reference potential, for tests and demos)"
    exploration = config.exploration
    rows = {
        "Project": config.project.name,
        "Elements": ", ".join(config.elements),
        "Starting structures": f"{len(structures)}: "
        + ", ".join(f"{count} x {formula}" for formula, count in formulas.items()),
        "DFT": dft_text,
        "Training": f"{config.training.mode} ACE, accuracy {config.training.accuracy}, "
        f"cutoff {config.training.cutoff} A",
        "Exploration": f"{exploration.steps} MD steps at "
        + ", ".join(f"{t:g}" for t in exploration.temperatures)
        + f" K; select above gamma {exploration.gamma_select:g}, halt above {exploration.gamma_halt:g}"
        + f"\nMD engine: {md_engine}",
        "Selection": f"at most {config.selection.max_per_generation} per generation ({config.selection.method})",
        "Loop": f"at most {config.loop.max_generations} generations, {config.loop.dft_budget} DFT labels, "
        f"seed {config.loop.seed}",
        "Config hash": config.config_hash()[:16],
    }
    table = Table(title="mlip-auto validate", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows.items():
        table.add_row(name, Text(value))
    return table
