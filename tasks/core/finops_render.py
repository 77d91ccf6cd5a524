"""The FinOps report as charts (PNG bytes) and one self-contained HTML page. Pure: no files.

Each chart is drawn from a named series (``chart_series``) so that a test can check that what
is plotted is the report's data and that the image really shows it.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import timedelta

import polars as pl
from matplotlib.figure import Figure

from tasks.core.finops import FinopsReport

CHARTS = {
    "cost_over_time": "Cost over time by workflow (USD)",
    "cost_per_outcome": "Cost per resolved outcome (USD)",
    "path_mix": "Path mix (items per execution path)",
    "top_prompts": "Ten most expensive calls (USD)",
}


def usd(value: float) -> str:
    """An amount that a real cost never shows as $0.000000: micro-dollars below one dollar.

    A verdict call costs about $0.000005, so six decimals of dollars round whole reports of
    real spend to zero; micro-dollars with three decimals resolve a nano-dollar.
    """
    if abs(value) >= 1:
        return f"${value:,.6f}"
    return f"{value * 1_000_000:,.3f} µ$"


def chart_series(report: FinopsReport) -> dict[str, pl.DataFrame]:
    """label / group / value frames, one per chart."""
    daily = report.end - report.start > timedelta(days=3)
    bucket = pl.col("hour").dt.truncate("1d" if daily else "1h")
    fmt = "%Y-%m-%d" if daily else "%m-%d %H:00"
    over_time = (
        report.by_hour.group_by(bucket.dt.strftime(fmt).alias("label"), "workflow")
        .agg(pl.col("cost_usd").sum().alias("value"))
        .rename({"workflow": "group"})
        .sort("label", "group")
        if not report.by_hour.is_empty()
        else pl.DataFrame(schema={"label": pl.String, "group": pl.String, "value": pl.Float64})
    )
    per_outcome = report.per_outcome.select(
        pl.col("outcome").alias("label"),
        pl.col("workflow").alias("group"),
        pl.col("usd_per_outcome").alias("value"),
    )
    path_mix = report.path_mix.select(
        pl.col("path").alias("label"),
        pl.col("workflow").alias("group"),
        pl.col("items").cast(pl.Float64).alias("value"),
    )
    top = (
        report.top_calls.select(
            pl.concat_str([pl.col("call_id").str.slice(0, 14), "pattern"], separator=" ").alias(
                "label"
            ),
            pl.col("workflow").alias("group"),
            pl.col("cost_usd").alias("value"),
        )
        if not report.top_calls.is_empty()
        else pl.DataFrame(schema={"label": pl.String, "group": pl.String, "value": pl.Float64})
    )
    return {
        "cost_over_time": over_time,
        "cost_per_outcome": per_outcome,
        "path_mix": path_mix,
        "top_prompts": top,
    }


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def render_chart(name: str, series: pl.DataFrame) -> bytes:
    """One chart as PNG: stacked bars over time, horizontal bars otherwise."""
    figure = Figure(figsize=(8, 3.6))
    axes = figure.subplots()
    axes.set_title(CHARTS[name])
    if series.is_empty():
        axes.text(0.5, 0.5, "no data in this window", ha="center", va="center")
        axes.set_axis_off()
        return _png(figure)
    if name == "cost_over_time":
        labels = series["label"].unique(maintain_order=True).to_list()
        bottom = [0.0] * len(labels)
        for group in series["group"].unique(maintain_order=True).to_list():
            values = dict(series.filter(pl.col("group") == group).select("label", "value").rows())
            heights = [float(values.get(label, 0.0)) for label in labels]
            axes.bar(labels, heights, bottom=bottom, label=group)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        axes.legend(fontsize="small")
        axes.tick_params(axis="x", labelrotation=45, labelsize="small")
    else:
        names = [f"{g}: {lbl}" for lbl, g in series.select("label", "group").rows()]
        axes.barh(names, series["value"].to_list(), color="tab:blue")
        axes.invert_yaxis()
        axes.tick_params(axis="y", labelsize="small")
        if name == "path_mix":
            axes.set_xscale("log")
    return _png(figure)


def render_charts(report: FinopsReport) -> dict[str, bytes]:
    return {name: render_chart(name, series) for name, series in chart_series(report).items()}


def _table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(f'{v:.6g}' if isinstance(v, float) else str(v))}</td>" for v in row
        )
        + "</tr>"
        for row in frame.rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: FinopsReport, charts: dict[str, bytes]) -> str:
    """A single HTML page with every chart embedded as a base64 PNG: mail it, open it offline."""
    images = "".join(
        f'<figure><img alt="{html.escape(CHARTS[name])}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/></figure>'
        for name, png in charts.items()
    )
    bursts = (
        f'<p class="alert">{report.bursts.height} burst hour(s): spend above the trailing '
        "baseline</p>" + _table(report.bursts)
        if not report.bursts.is_empty()
        else "<p>No burst: no hour spent above its trailing baseline.</p>"
    )
    if not report.grounding_alerts.is_empty():
        bursts += (
            f'<p class="alert">{report.grounding_alerts.height} day(s) with a grounded-answer '
            "rate below the bound</p>" + _table(report.grounding_alerts)
        )
    sections = [
        ("Cost per workflow", report.by_workflow),
        ("Cost per pattern (route/path x model)", report.by_pattern),
        ("Cost per resolved outcome (attributed model cost + review)", report.resolved_outcomes),
        ("Workflow spend per machine decision", report.per_outcome),
        ("Path mix", report.path_mix),
        ("Cache savings", report.cache_savings),
        ("Persona panel: cost per item and effect on the inbox", report.panel),
        ("Grounded-answer rate per day, tier and model (ask)", report.grounding),
        ("Periodic-summary drafts: cost per accepted summary", report.drafting),
        ("Ten most expensive prompts (calls)", report.top_calls),
    ]
    tables = "".join(f"<h2>{html.escape(t)}</h2>{_table(f)}" for t, f in sections)
    window = f"{report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>pharmalane FinOps</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.alert{color:#b00}"
        "</style></head><body>"
        f"<h1>pharmalane FinOps: {html.escape(window)}</h1>"
        f"<p>Total spend <b>{usd(report.total_usd)}</b> over {report.calls} model calls.</p>"
        f"<h2>Burst alerts</h2>{bursts}{images}{tables}</body></html>"
    )
