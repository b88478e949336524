"""The status report's figures as rich tables: what a person reads in the terminal before opening the HTML."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from autopipe.report_figures import log_warning


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def key_figures(figures: dict[str, Any]) -> Table:
    """State, labels, DFT cost, time per stage, stop reason; first, whether the log they come from is damaged."""
    s = figures["summary"]
    labels = s["labels"]
    table = Table(title=f"mlip-auto status {figures['project']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    warning = log_warning(figures)
    if warning:
        table.add_row("event log", Text(warning, style="bold red"))
    stop = s["stop_reason"] or (
        "-" if s["finished"] else "not finished (running, or stopped: rerun to resume)"
    )
    for name, value in {
        "state": f"{s['state']} (generation {s['generation']})"
        + (f": {s['state_reason']}" if s["state_reason"] else ""),
        "stop reason": stop,
        "assessment": s["assessment"] or "-",
        "labels": f"{labels['done']} done, {labels['in_flight']} in flight, {labels['failed']} failed",
        "DFT": f"{s['dft_wall_time_s']:.1f} s wall, {s['dft_core_hours']:.3g} core-hours "
        f"(cores per task: {s['dft_cores_per_task']})",
        "time per stage": ", ".join(f"{n} {t:.1f} s" for n, t in s["stage_time_s"].items()) or "-",
        "potentials": ", ".join(s["models"].values()) or "-",
        "events": f"{s['events']}, last at {s['last_event'][:19]} UTC",
    }.items():
        table.add_row(name, Text(value))
    return table


def _table(title: str, headers: list[str], rows: list[list[str | Text]]) -> Table:
    table = Table(*headers, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    return table


def generations(figures: dict[str, Any]) -> Table:
    """Per generation: training set, validation RMSE, how far MD walked out, what was selected."""
    return _table(
        "Generations (validation set)",
        ["gen", "train/val", "force RMSE meV/A", "energy RMSE meV/atom", "max gamma", "selected"],
        [[str(g["generation"]), f"{g['n_train']}/{g['n_validation']}", _number(g["force_rmse_mev_a"]),
          _number(g["energy_rmse_mev_atom"]), _number(g["max_gamma"]),
          "-" if g["n_selected"] is None else str(g["n_selected"])] for g in figures["generations"]],
    )  # fmt: skip


def assessments(figures: dict[str, Any]) -> Table:
    """Every assessed property against fresh DFT, with its tolerance and the verdict."""
    rows = [[f"{a['generation']}/{a['round']}", str(r["name"]), f"{_number(r['dft'])} {r['unit']}",
             f"{_number(r['potential'])} {r['unit']}", str(r["tolerance"]), "yes" if r["passed"] else "no",
             Text(a["verdict"])]
            for a in figures["assessments"] for r in a["rows"]]  # fmt: skip
    headers = ["gen/round", "", "DFT", "potential", "tolerance", "passed", "verdict"]
    return _table("Assessment against fresh DFT", headers, rows)


def failures(figures: dict[str, Any]) -> Table:
    """The latest failed tasks, newest first."""
    headers = ["seq", "task", "gen", "failure", "recoveries tried", "message"]
    return _table("Latest failures", headers, [
        [str(f["seq"]), f["kind"], str(f["generation"]), f["failure_kind"],
         ", ".join(f["recoveries"]) or "none", Text(f["message"][:120])]
        for f in figures["failures"]])  # fmt: skip


def summary(figures: dict[str, Any]) -> list[Table]:
    """The tables worth printing: empty sections are left out."""
    tables = [key_figures(figures)]
    if figures["generations"]:
        tables.append(generations(figures))
    if figures["assessments"]:
        tables.append(assessments(figures))
    if figures["failures"]:
        tables.append(failures(figures))
    return tables
