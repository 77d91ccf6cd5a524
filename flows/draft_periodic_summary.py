"""Flow `draft-periodic-summary`: the "literature and signals" section of a periodic safety
report, per watched product and month, drafted by the synthesis model and sent for review.

FAERS signals (Prefect-cached on the shipped tables' hash) -> per month (one task run for all
its products): evidence -> model draft through the supervisor, grounding-checked (or the
template draft when the model cannot answer) -> Parquet + Markdown + review inbox item -> one
markdown artifact. Monthly on the 2nd (prefect.yaml); a backfill is one run over a range of
months. Re-running a month with the same evidence stores, sends and pays nothing twice.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, model_validator

from flows.runs import checked, run_id
from tasks.core.drafting import month_bounds, months_between, previous_month
from tasks.services.drafting import PeriodResult
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.drafting import check_products, draft_period
from tasks.steps.knowledge import faers_signals

MAX_MONTHS = 60
ARTIFACT_CHARS = 60_000  # Prefect keeps artifacts in its database: the drafts, not a book


class DraftParams(BaseModel):
    """Which months to draft: one ``month``, a backfill from ``start_month`` to ``end_month``,
    or (neither) the month before today."""

    month: str | None = Field(None, description="one month, YYYY-MM")
    start_month: str | None = Field(None, description="backfill: first month, YYYY-MM")
    end_month: str | None = Field(None, description="backfill: last month (inclusive), YYYY-MM")
    products: list[str] | None = Field(
        None, description="watched products to draft; default: every watched product"
    )

    @model_validator(mode="after")
    def _one_way(self) -> DraftParams:
        if self.month and (self.start_month or self.end_month):
            raise ValueError("give month, or start_month and end_month, not both")
        if bool(self.start_month) != bool(self.end_month):
            raise ValueError("a backfill needs both start_month and end_month")
        for value in (self.month, self.start_month, self.end_month):
            if value:
                month_bounds(value)
        if self.start_month and self.end_month:
            span = months_between(self.start_month, self.end_month)
            if len(span) > MAX_MONTHS:
                raise ValueError(f"a backfill covers at most {MAX_MONTHS} months")
        return self

    def periods(self, now: datetime) -> list[str]:
        if self.start_month and self.end_month:
            return months_between(self.start_month, self.end_month)
        return [self.month or previous_month(now.date())]


class DraftSummary(BaseModel):
    periods: list[str]
    products: list[str]
    drafts: int
    new_drafts: int
    templates: int
    removed_sentences: int
    cost_usd: float
    inbox_items: list[str]
    markdown: list[str]


@flow(name="draft-periodic-summary", log_prints=False)
def draft_periodic_summary(
    month: str | None = None,
    start_month: str | None = None,
    end_month: str | None = None,
    products: list[str] | None = None,
) -> DraftSummary:
    """Draft the literature and signals section per product and month, for review.

    Args:
        month: one month, YYYY-MM; default (with no backfill range) the month before today
        start_month: backfill: first month, YYYY-MM
        end_month: backfill: last month (inclusive), YYYY-MM
        products: watched products to draft; default every watched product
    """
    params = checked(
        DraftParams, month=month, start_month=start_month, end_month=end_month, products=products
    )
    settings, now = load_settings(), utcnow()
    chosen = check_products(settings, params.products)
    signals = pl.DataFrame(faers_signals())
    results = [
        draft_period(settings, period, chosen, signals, run_id(), now)
        for period in params.periods(now)
    ]
    summary = _summary(results, chosen)
    _publish(summary, results)
    return summary


def _summary(results: list[PeriodResult], products: list[str]) -> DraftSummary:
    return DraftSummary(
        periods=[r.period for r in results],
        products=products,
        drafts=sum(r.drafts for r in results),
        new_drafts=sum(r.new_drafts for r in results),
        templates=sum(r.templates for r in results),
        removed_sentences=sum(r.removed_sentences for r in results),
        cost_usd=sum(r.cost_usd for r in results),
        inbox_items=[i for r in results for i in r.inbox_items],
        markdown=[m for r in results for m in r.markdown],
    )


def _publish(summary: DraftSummary, results: list[PeriodResult]) -> None:
    """One log line per period, one markdown artifact with every draft of the run."""
    logger = get_run_logger()
    for r in results:
        logger.info(
            "%s: %d drafts (%d new, %d templates), %d unsupported sentences removed, $%.6f",
            r.period,
            r.drafts,
            r.new_drafts,
            r.templates,
            r.removed_sentences,
            r.cost_usd,
        )
    head = (
        f"# Periodic-summary drafts: {', '.join(summary.periods)}\n\n"
        f"{summary.drafts} drafts ({summary.new_drafts} new, {summary.templates} templates), "
        f"{summary.removed_sentences} unsupported sentences removed, "
        f"${summary.cost_usd:.6f}; in the review inbox as kind `draft`.\n\n"
    )
    body = "\n\n---\n\n".join(text for r in results for text in r.texts)
    create_markdown_artifact(
        key="draft-periodic-summary",
        markdown=(head + body)[:ARTIFACT_CHARS],
        description="periodic-summary drafts for review",
    )
