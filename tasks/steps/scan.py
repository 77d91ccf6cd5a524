"""Prefect tasks of the nightly literature scan: intake (tasks/services/intake.py) and
screening (tasks/services/screening.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.services import intake, literature, screening
from tasks.services.intake import Validated
from tasks.services.literature import FetchedWindow
from tasks.services.runtime import Runtime
from tasks.services.screening import ChunkResult
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(
    name="load-citations", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def load_citations(paths: Sequence[Path], cache_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse MEDLINE files; a parsed copy is kept per file content so re-reads are cheap."""
    return intake.load_citations(paths, cache_dir)


@task(
    name="parse-citations",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def citation_blocks(
    paths: Sequence[Path], cache_dir: Path, block_rows: int, *, require_records: bool = True
) -> list[Path]:
    """Parse each MEDLINE file once, block by block (bounded memory), into the cache."""
    return intake.citation_blocks(paths, cache_dir, block_rows, require_records=require_records)


@task(name="load-block", cache_policy=NO_CACHE)
def load_block(block: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One parsed block of citations and its parse rejects."""
    return intake.read_block(block)


@task(
    name="fetch-pubmed", retries=1, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def fetch_pubmed(
    settings: Settings, since: date | None, until: date, now: datetime
) -> FetchedWindow:
    """Records about watched products entered in PubMed since each product's watermark."""
    fetched = literature.fetch_pubmed(Runtime.for_settings(settings), since, until, now)
    get_run_logger().info(
        "pubmed: %d records from %d product windows ending %s (%d fetched now)",
        fetched.records,
        len(fetched.windows),
        until,
        fetched.queries_sent,
    )
    return fetched


@task(name="advance-watermarks", cache_policy=NO_CACHE)
def advance_watermarks(settings: Settings, fetched: FetchedWindow, now: datetime) -> dict[str, str]:
    """After every item of the run is decided: where each product query resumes next time."""
    return literature.advance_watermarks(Runtime.for_settings(settings), fetched, now)


@task(name="first-seen", cache_policy=NO_CACHE)
def first_seen(frame: pl.DataFrame, settings: Settings, now: datetime) -> pl.DataFrame:
    """Each item's first retrieval time (kept on re-fetch): day 0 of a literature case."""
    return literature.with_first_seen(Runtime.for_settings(settings), frame, now)


@task(name="select-window", cache_policy=NO_CACHE)
def select_window(
    citations: pl.DataFrame, since: date | None, until: date | None, split: str, limit: int | None
) -> pl.DataFrame:
    """The publication window and evaluation split of the parsed citations."""
    return intake.window(citations, since, until, split, limit)


@task(name="validate-citations", cache_policy=NO_CACHE)
def validate(frame: pl.DataFrame, settings: Settings) -> Validated:
    """Great Expectations suite, then in-batch duplicates; failures become quarantine rows."""
    return intake.validate(Runtime.for_settings(settings), frame)


@task(
    name="write-quarantine",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def write_quarantine(rows: pl.DataFrame, settings: Settings, run_id: str, now: datetime) -> int:
    """Quarantine rows once: the same record with the same reason is never written twice."""
    return intake.write_quarantine(Runtime.for_settings(settings), rows, run_id, now)


@task(name="skip-already-decided", cache_policy=NO_CACHE)
def pending_only(frame: pl.DataFrame, settings: Settings) -> tuple[pl.DataFrame, int]:
    """Items whose (id, content) already has a decision are done: skipping them costs nothing."""
    return intake.pending_only(Runtime.for_settings(settings), frame)


@task(name="apply-tools-and-route", cache_policy=NO_CACHE)
def tools_and_route(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Watched-product match (real drug dictionary), then the Router's rules."""
    return intake.tools_and_route(Runtime.for_settings(settings), frame)


@task(
    name="screen-chunk", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def screen_chunk(
    chunk: pl.DataFrame, settings: Settings, run_id: str, now: datetime
) -> ChunkResult:
    """Embed what needs the model (reusing vectors already paid for), score, plan, write."""
    result = screening.screen(Runtime.for_settings(settings), chunk, run_id, now)
    get_run_logger().info(
        "chunk %s: %d items, %d embedded, %d deferred, %d decisions, %d escalations",
        result.chunk_id,
        result.items,
        result.embedded,
        result.deferred,
        result.decisions_written,
        result.escalations_written,
    )
    return result


@task(
    name="materialise-digest",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def materialise_digest(months: Sequence[str], settings: Settings, now: datetime) -> int:
    """Rebuild the product digest of every month the run touched (whole months, so idempotent)."""
    return screening.materialise_digest(Runtime.for_settings(settings), months, now)
