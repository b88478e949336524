"""The status report's Altair charts, each drawn from one entry of `report_figures.collect`.

Every function returns a chart or None when the run has produced nothing to draw yet (no potential, no
walker), so a report of a young run shows what exists and says what does not.
"""

from __future__ import annotations

from typing import Any

import altair as alt

WIDTH = 560
PASSED_COLORS = alt.Scale(domain=["passed", "failed"], range=["#4c9a2a", "#c0392b"])


def charts(figures: dict[str, Any]) -> dict[str, tuple[str, alt.TopLevelMixin]]:
    """Chart id -> (section title, chart) for every chart that has data."""
    drawn = {
        "rmse": ("Validation errors per generation", rmse(figures["generations"])),
        "assessment": ("Assessment against fresh DFT", assessment(figures["assessments"])),
        "composition": (
            "Dataset per generation and config type (initial, md, embedded, ...)",
            stacked_bars(figures["composition"], "structures", "structures", "config_type", "config type"),
        ),
        "elements": (
            "Labelled atoms per element",
            stacked_bars(figures["elements"], "atoms", "labelled atoms", "element", "element"),
        ),
        "gamma": (
            "Extrapolation grade of exploration frames (dashed: the select and halt thresholds)",
            gamma(figures["gamma"]),
        ),
        "timeline": ("Timeline of states and tasks", timeline(figures["timeline"])),
    }
    return {key: (title, chart) for key, (title, chart) in drawn.items() if chart is not None}


def rmse(generations: list[dict[str, Any]]) -> alt.FacetChart | None:
    """Force and energy RMSE on the validation (and training) set: is the potential getting better?"""
    rows = [
        {"generation": g["generation"], "quantity": quantity, "set": subset, "rmse": g[prefix + key]}
        for g in generations
        for quantity, key in (
            ("force RMSE (meV/Å)", "force_rmse_mev_a"),
            ("energy RMSE (meV/atom)", "energy_rmse_mev_atom"),
        )
        for subset, prefix in (("validation", ""), ("train", "train_"))
        if g.get(prefix + key) is not None
    ]
    if not rows:
        return None
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("generation:O"),
            y=alt.Y("rmse:Q", title="RMSE"),
            color=alt.Color("set:N", title="set"),
            tooltip=["generation:O", "set:N", "rmse:Q"],
        )
        .properties(width=WIDTH // 2 - 20, height=200)
        .facet(column=alt.Column("quantity:N", title=None))
        .resolve_scale(y="independent")
    )


def assessment(assessments: list[dict[str, Any]]) -> alt.FacetChart | None:
    """The potential's deviation from fresh DFT per compared number, in percent, one row per assessment;
    red bars failed their tolerance (named in the tooltip, with both values)."""
    rows = [
        {**row, "assessment": f"gen {a['generation']}, round {a['round']}",
         "result": "passed" if row["passed"] else "failed"}
        for a in assessments
        for row in a["rows"]
        if row["error_percent"] is not None
    ]  # fmt: skip
    if not rows:
        return None
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            x=alt.X("name:N", title=None, sort=None),
            y=alt.Y("error_percent:Q", title="potential - DFT (%)"),
            color=alt.Color("result:N", scale=PASSED_COLORS),
            tooltip=["property:N", "name:N", "dft:Q", "potential:Q", "unit:N", "error_percent:Q",
                     "tolerance:N", "result:N", "note:N"],
        )
        .properties(width=WIDTH, height=160)
        .facet(row=alt.Row("assessment:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
    )  # fmt: skip


def stacked_bars(
    rows: list[dict[str, Any]], measure: str, title: str, by: str, by_title: str
) -> alt.Chart | None:
    """`measure` per generation as bars stacked by `by`; every field of the rows in the tooltip."""
    if not rows:
        return None
    tooltip = [f"{key}:{'N' if isinstance(value, str) else 'Q'}" for key, value in rows[0].items()]
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            x=alt.X("generation:O"),
            y=alt.Y(f"{measure}:Q", title=title),
            color=alt.Color(f"{by}:N", title=by_title),
            tooltip=tooltip,
        )
        .properties(width=WIDTH, height=220)
    )


def gamma(figure: dict[str, Any]) -> alt.FacetChart | None:
    """How many MD frames met which extrapolation grade, one row per generation, with the selection and halt
    thresholds drawn as dashed lines."""
    if not figure["histogram"]:
        return None
    bars = (
        alt.Chart()
        .mark_rect(stroke="white")
        .encode(
            x=alt.X("gamma_from:Q", title="max extrapolation grade of a frame", scale=alt.Scale(type="log")),
            x2="gamma_to:Q",
            y=alt.Y("frames:Q", title="frames"),
            y2=alt.datum(0),
            tooltip=["generation:O", "gamma_from:Q", "gamma_to:Q", "frames:Q"],
        )
    )
    rules = [
        alt.Chart().mark_rule(strokeDash=[6, 3], color=color).encode(x=alt.datum(value))
        for value, color in (
            (figure["thresholds"]["select"], "#e67e22"),
            (figure["thresholds"]["halt"], "#c0392b"),
        )
        if value
    ]
    return (
        alt.layer(bars, *rules, data=alt.Data(values=figure["histogram"]))
        .properties(width=WIDTH, height=90)
        .facet(row=alt.Row("generation:O", title="generation"))
    )


def timeline(rows: list[dict[str, Any]]) -> alt.Chart | None:
    """Which state the loop was in, and which kind of task ran on which executor, when (UTC)."""
    if not rows:
        return None
    return (
        alt.Chart(alt.Data(values=rows))
        .mark_bar(minBandSize=2)
        .encode(
            x=alt.X(
                "start:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M:%S")
            ),
            x2="end:T",
            y=alt.Y("lane:N", title=None, sort=None),
            color=alt.Color("name:N", title="state / task", scale=alt.Scale(scheme="tableau20")),
            tooltip=["detail:N", "start:N", "end:N"],
        )
        .properties(width=WIDTH, height=alt.Step(22))
    )
