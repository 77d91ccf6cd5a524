"""FinOps: the ledger and decisions of a period, checked and aggregated; its window and HTML."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl

from tasks.core.answer_quality import grounded_rates, low_rate_days
from tasks.core.finops import (
    FinopsReport,
    assemble,
    cost_per_accepted_summary,
    panel_effect,
    with_resolutions,
)
from tasks.core.finops_render import render_charts, render_html
from tasks.io.reports import write_text_atomic
from tasks.io.warehouse import Warehouse
from tasks.services.drafting import DRAFTS
from tasks.services.panel import REVIEWER as PANEL_REVIEWER
from tasks.services.runtime import Runtime


@dataclass(frozen=True)
class Period:
    """Whole UTC days ``first``..``last``, as the half-open ``[start, end)``."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), tzinfo=UTC)

    @classmethod
    def ending(cls, last: date, days: int) -> Period:
        """``days`` whole days ending with ``last``."""
        return cls(last - timedelta(days=days - 1), last)


def report(runtime: Runtime, start: datetime, end: datetime) -> FinopsReport:
    """Ledger and decisions of ``[start, end)``, checked and aggregated, priced per outcome."""
    figures = Warehouse(runtime.lake).figures(start, end)
    supervisor = runtime.settings.supervisor
    assembled = assemble(
        figures,
        runtime.rules.models,
        start=start,
        end=end,
        burst_factor=supervisor.burst_factor,
        baseline_hours=supervisor.burst_baseline_hours,
    )
    priced = with_resolutions(
        assembled,
        figures,
        resolutions(runtime),
        reviewer_usd=supervisor.reviewer_cost_usd,
    )
    drafting = cost_per_accepted_summary(
        figures.calls, drafts_made(runtime, start, end), draft_reviews(runtime)
    )
    rates = grounded_rates(answers(runtime, start, end))
    low = low_rate_days(rates, runtime.settings.knowledge.grounding.min_rate)
    return replace(
        priced,
        panel=panel_effect(panel_reviews(runtime, start, end)),
        grounding=rates,
        grounding_alerts=low,
        drafting=drafting,
    )


def drafts_made(runtime: Runtime, start: datetime, end: datetime) -> pl.DataFrame:
    """Periodic-summary drafts made in ``[start, end)``: draft_id, composer."""
    drafts = runtime.lake.read(DRAFTS, columns=["draft_id", "composer", "created_at"])
    if drafts.is_empty():
        return pl.DataFrame(schema={"draft_id": pl.String, "composer": pl.String})
    stamp = pl.col("created_at").dt.epoch("us")
    first, last = (int(t.timestamp() * 1_000_000) for t in (start, end))
    return drafts.filter((stamp >= first) & (stamp < last)).select("draft_id", "composer")


def draft_reviews(runtime: Runtime) -> pl.DataFrame:
    """Every draft in the review inbox: draft_id, status, outcome (null while open)."""
    items = runtime.inbox.items(status=None) if runtime.settings.inbox_db.exists() else []
    return pl.DataFrame(
        [(i.source_id, i.status, i.outcome) for i in items if i.kind == "draft"],
        schema={"draft_id": pl.String, "status": pl.String, "outcome": pl.String},
        orient="row",
    )


def answers(runtime: Runtime, start: datetime, end: datetime) -> pl.DataFrame:
    """The answers `ask` served in ``[start, end)`` with their grounding (knowledge service)."""
    rows = runtime.lake.read("answer_grounding")
    if rows.is_empty():
        return rows
    stamp = pl.col("created_at").dt.epoch("us")
    first, last = (int(t.timestamp() * 1_000_000) for t in (start, end))
    return rows.filter((stamp >= first) & (stamp < last))


def panel_reviews(runtime: Runtime, start: datetime, end: datetime) -> pl.DataFrame:
    """The persona panel's review rows of ``[start, end)`` (tasks/services/panel.py)."""
    reviews = runtime.lake.read("panel_reviews")
    if reviews.is_empty():
        return reviews
    stamp = pl.col("reviewed_at").dt.epoch("us")  # instants: the lake's zone name may differ
    first, last = (int(t.timestamp() * 1_000_000) for t in (start, end))
    return reviews.filter((stamp >= first) & (stamp < last))


def resolutions(runtime: Runtime) -> pl.DataFrame:
    """Every human resolution in the review inbox: the lake's item id, kind, outcome.

    An item the persona panel closed was resolved by no human: it carries no review cost. A
    draft's outcome is prefixed ``draft_`` (a draft accepted is not a triage case accepted).
    """
    resolved = runtime.inbox.items(status="resolved") if runtime.settings.inbox_db.exists() else []
    return pl.DataFrame(
        [
            (i.source_id, i.kind, f"draft_{i.outcome}" if i.kind == "draft" else i.outcome)
            for i in resolved
            if i.reviewer != PANEL_REVIEWER
        ],
        schema={"item_id": pl.String, "kind": pl.String, "outcome": pl.String},
        orient="row",
    )


def write_html(report: FinopsReport, path: Path) -> Path:
    """The self-contained HTML report with its charts."""
    return write_text_atomic(path, render_html(report, render_charts(report)))
