"""Flow `weekly-finops`: the week's FinOps report as HTML under PHARMALANE_HOME/reports/ and as
Prefect artifacts (cost per workflow, cost per outcome, top calls, burst alerts)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from tasks.core.finops import FinopsReport
from tasks.core.finops_render import usd
from tasks.services.finops import Period
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.finops import finops_report, write_finops_html


class FinopsSummary(BaseModel):
    start: datetime
    end: datetime
    total_usd: float
    calls: int
    bursts: int
    report: str


def _rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    """Artifact rows, amounts at full precision (``str`` of the float: 4.16e-05, never 0.0)."""
    return [{k: str(v) for k, v in row.items()} for row in frame.to_dicts()]


GROUNDING_LOW_EVENT = "pharmalane.answers.grounding-low"


def _grounding(report: FinopsReport) -> None:
    """The grounded-answer rate as an artifact; a day below the bound is an alert (log + event)."""
    if report.grounding.is_empty():
        return
    create_table_artifact(
        key="finops-grounded-answers",
        table=_rows(report.grounding),
        description="ask: answers fully supported by the chunks they cite, per day, tier, model "
        "(refusals counted apart)",
    )
    low = report.grounding_alerts
    if low.is_empty():
        return
    for day, answers, grounded, rate in low.select("day", "answers", "grounded", "rate").rows():
        get_run_logger().warning(
            "ALERT grounded-answer rate %.3f on %s (%d of %d answers grounded)",
            rate,
            day,
            grounded,
            answers,
        )
    emit_event(
        event=GROUNDING_LOW_EVENT,
        resource={
            "prefect.resource.id": "pharmalane.knowledge.ask",
            "prefect.resource.name": "knowledge answers",
        },
        payload={"days": _rows(low)},
    )


@flow(name="weekly-finops", log_prints=False)
def weekly_finops(
    until: date | None = None, days: Annotated[int, Field(ge=1, le=92)] = 7
) -> FinopsSummary:
    """The period's FinOps report as HTML and as Prefect artifacts.

    Args:
        until: last day reported (UTC); default today
        days: days reported, ending with `until`
    """
    settings = load_settings()
    period = Period.ending(until or utcnow().date(), days)
    start, end, last = period.start, period.end, period.last
    report = finops_report(settings, start, end)
    path = write_finops_html(
        report, settings.reports_dir / f"finops-{start:%Y%m%d}-{last:%Y%m%d}.html"
    )
    create_table_artifact(
        key="finops-cost-per-workflow", table=_rows(report.by_workflow), description="USD"
    )
    create_table_artifact(key="finops-cost-per-outcome", table=_rows(report.per_outcome))
    create_table_artifact(
        key="finops-cost-per-resolved-outcome",
        table=_rows(report.resolved_outcomes),
        description="USD: model cost attributed to the items resolved so, plus one review each",
    )
    create_table_artifact(key="finops-top-calls", table=_rows(report.top_calls))
    _lane_tables(report)
    _grounding(report)
    create_markdown_artifact(
        key="finops-summary",
        markdown=(
            f"# FinOps {start:%Y-%m-%d} to {last:%Y-%m-%d}\n\n"
            f"Total **{usd(report.total_usd)}** over {report.calls} calls; "
            f"{report.bursts.height} burst hour(s). Report: `{path}`"
        ),
    )
    logger = get_run_logger()
    for hour, cost, baseline in report.bursts.select("hour", "cost_usd", "baseline_usd").rows():
        logger.warning(
            "ALERT spend burst at %s: $%.6f against a trailing $%.6f/h", hour, cost, baseline
        )
    logger.info(
        "finops: $%.6f over %d calls, %d bursts",
        report.total_usd,
        report.calls,
        report.bursts.height,
    )
    return FinopsSummary(
        start=start,
        end=end,
        total_usd=report.total_usd,
        calls=report.calls,
        bursts=report.bursts.height,
        report=str(path),
    )


def _lane_tables(report: FinopsReport) -> None:
    """The tables of lanes that may not have run in the window (only when they did)."""
    if not report.panel.is_empty():
        create_table_artifact(
            key="finops-persona-panel",
            table=_rows(report.panel),
            description="the persona panel: USD per item, items lowered / sent first / closed",
        )
    if not report.drafting.is_empty():
        create_table_artifact(
            key="finops-cost-per-accepted-summary",
            table=_rows(report.drafting),
            description="periodic-summary drafts of the window: USD per accepted summary",
        )
