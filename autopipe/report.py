"""`mlip-auto status`: one self-contained HTML file from a project's log and structure database.

The page carries Vega, Vega-Lite and vega-embed inline (vl-convert builds the bundle), so it opens on an
offline login node or as an e-mail attachment. Building the bundle takes about a second, so it is kept in
the user's cache directory (`~/.cache/mlip-autopipe/`) and reused by every later report.

Example::

    figures = build_report(Path("al_quickstart"))   # writes al_quickstart/report/status.html
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import altair as alt

from autopipe import __version__
from autopipe.errors import UsageError
from autopipe.output_paths import REPORT, REPORT_MARKER, check_output, replace_atomically
from autopipe.report_charts import charts
from autopipe.report_figures import collect, log_warning

REPORT_FILE = Path("report") / "status.html"


def build_report(project: Path, output: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Write the HTML report of `project` (default `<project>/report/status.html`); return its figures.

    `output` must pass the rule of `autopipe.output_paths` (`force`: replace a file that is not a report).
    """
    figures = collect(project)
    path = check_output(output or project / REPORT_FILE, REPORT, force)
    page = render_html(figures)
    try:
        with replace_atomically(path) as handle:  # a browser reloading the page never sees half of it
            handle.write(page)
    except OSError as err:
        raise UsageError(f"cannot write the report to {path}: {err.strerror}") from None
    return figures


def render_html(figures: dict[str, Any]) -> str:
    """The whole page: key figures, the charts, assessments and failures as tables."""
    drawn = charts(figures)
    specs = {key: chart.to_dict() for key, (_, chart) in drawn.items()}
    sections = [
        f'<section><h2>{html.escape(title)}</h2><div class="chart" id="{key}"></div></section>'
        for key, (title, _) in drawn.items()
    ]
    summary = figures["summary"]
    title = f"{Path(figures['project']).name}: {summary['state']} (generation {summary['generation']})"
    return _PAGE.format(
        marker=REPORT_MARKER,
        title=html.escape(title),
        style=_STYLE,
        bundle=_script(vega_bundle()),
        key_figures=_damage_notice(log_warning(figures)) + _key_figures(summary),
        sections="\n".join(sections) or "<p>Nothing to draw yet: no structures, potential or walker.</p>",
        assessments=_assessment_tables(figures["assessments"]),
        failures=_failures_table(figures["failures"]),
        generated=html.escape(f"{figures['generated_at']} by mlip-autopipe {__version__}"),
        embed=_script(_EMBED.replace("SPECS", json.dumps(specs))),
    )


def _script(code: str) -> str:
    """`code` safe inside an inline <script> element."""
    return code.replace("</script", "<\\/script")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _damage_notice(warning: str) -> str:
    """A damaged log's warning, above the key figures it casts doubt on ('' when the log is intact)."""
    return f'<p class="damaged" role="alert">{html.escape(warning)}</p>' if warning else ""


def _key_figures(s: dict[str, Any]) -> str:
    labels = s["labels"]
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in s["stage_time_s"].items())
    rows = [
        [
            "state",
            f"{s['state']} (generation {s['generation']})"
            + (f": {s['state_reason']}" if s["state_reason"] else ""),
        ],
        ["stop reason", s["stop_reason"] or ("(running or interrupted)" if not s["finished"] else "-")],
        ["assessment", s["assessment"] or "-"],
        ["labels", f"{labels['done']} done, {labels['in_flight']} in flight, {labels['failed']} failed"],
        ["DFT wall time", f"{s['dft_wall_time_s']:.1f} s"],
        ["DFT core-hours", f"{s['dft_core_hours']:.3g} (cores per task: {s['dft_cores_per_task']})"],
        ["time per stage", stages or "-"],
        ["potentials", ", ".join(s["models"].values()) or "-"],
        ["structures", s["structures"]],
        ["site", s["site"]],
        ["events", f"{s['events']} (last at {s['last_event']}), {s['resumes']} resumes"],
    ]
    return _table(["", ""], rows)


def _assessment_tables(assessments: list[dict[str, Any]]) -> str:
    if not assessments:
        return "<p>No assessment against fresh DFT yet.</p>"
    parts = []
    for a in assessments:
        heading = f"Generation {a['generation']}, round {a['round']} ({a['source']}): {a['verdict']}"
        parts.append(f"<h3>{html.escape(heading)}</h3><p>{html.escape(a['reason'])}</p>")
        parts.append(_table(
            ["property", "", "DFT", "potential", "unit", "error (%)", "tolerance", "passed", "note"],
            [[r["property"], r["name"], r["dft"], r["potential"], r["unit"], r["error_percent"],
              r["tolerance"], r["passed"], r["note"]] for r in a["rows"]],
        ))  # fmt: skip
    return "\n".join(parts)


def _failures_table(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return "<p>No task has failed.</p>"
    return _table(
        ["seq", "time (UTC)", "task", "generation", "failure", "message", "recoveries tried"],
        [
            [
                f["seq"],
                f["time"][:19],
                f["kind"],
                f["generation"],
                f["failure_kind"],
                f["message"],
                ", ".join(f["recoveries"]) or f"none ({f['attempts']} attempts)",
            ]
            for f in failures
        ],
    )


def vega_bundle() -> str:
    """Vega, Vega-Lite (the version Altair writes) and vega-embed as one script, cached once built."""
    import vl_convert

    vl_version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlip-autopipe"
    path = cache / f"vega-bundle-{vl_convert.__version__}-vl{vl_version}.js"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    try:
        with replace_atomically(path) as handle:
            handle.write(bundle)
    except OSError:
        pass  # a read-only home: build the bundle again next time
    return bundle


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; vertical-align: top; }
section { margin-bottom: 1.5em; }
footer { color: #777; font-size: 0.85em; }
.damaged { color: #b00020; font-weight: bold; border: 2px solid #b00020; padding: 0.5em 0.8em; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{marker}<title>{title}</title>
<style>{style}</style>
<script>{bundle}</script>
</head><body>
<h1>{title}</h1>
<h2>Key figures</h2>
{key_figures}
{sections}
<h2>Assessment</h2>
{assessments}
<h2>Latest failures</h2>
{failures}
<footer>{generated}</footer>
<script>{embed}</script>
</body></html>
"""

# Renders every chart as SVG; the page records its own errors in data attributes so that a headless
# browser (and a person with the developer tools closed) can tell a chart that did not draw.
_EMBED = """
const specs = SPECS;
const errors = [];
window.addEventListener("error", (e) => {
  errors.push(String(e.message));
  document.body.dataset.errors = errors.join("\\n");
});
Promise.allSettled(Object.entries(specs).map(([id, spec]) =>
  vegaEmbed("#" + id, spec, {renderer: "svg", actions: false})
    .catch((e) => { errors.push(id + ": " + e); throw e; })
)).then(() => {
  document.body.dataset.errors = errors.join("\\n");
  document.body.dataset.charts = errors.length ? "failed" : "rendered";
});
"""
