"""Flow `refresh-summaries`: re-index the knowledge layer and rebuild per-product summaries.

FAERS signals (Prefect-cached on the shipped tables' hash) -> index abstract chunks of in-scope
abstracts -> index reference chunks (dictionary + FAERS) -> publish the index version (cache
entries of older versions are dropped) -> materialise 'latest ADE literature' and 'signal
digest' per product -> artifact. Meant to run after each nightly scan.
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel

from tasks.services.paths import confined_sources
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.knowledge import (
    faers_signals,
    index_abstracts,
    index_reference,
    materialise_summaries,
    publish_index_version,
)


class RefreshSummary(BaseModel):
    index_version: str
    abstract_sources: int
    abstract_chunks: int
    abstract_chunks_inserted: int
    reference_chunks: int
    reference_chunks_inserted: int
    faers_pairs: int
    faers_signals: int
    summaries: int


@flow(name="refresh-summaries", log_prints=False)
def refresh_summaries(sources: list[str] | None = None) -> RefreshSummary:
    """Re-index the knowledge layer and rebuild the per-product summaries.

    Args:
        sources: MEDLINE XML files holding the scanned abstracts; default: the bundled files
    """
    settings = load_settings()
    sources = confined_sources(settings, sources)
    now = utcnow()
    signals = pl.DataFrame(faers_signals())
    abstracts = index_abstracts(settings, sources)
    reference = index_reference(settings, signals)
    version = publish_index_version(settings, now)
    rows = materialise_summaries(settings, signals, version, now)
    summary = RefreshSummary(
        index_version=version,
        abstract_sources=abstracts.sources,
        abstract_chunks=abstracts.chunks,
        abstract_chunks_inserted=abstracts.inserted,
        reference_chunks=reference.chunks,
        reference_chunks_inserted=reference.inserted,
        faers_pairs=signals.height,
        faers_signals=int(signals["signal"].sum()),
        summaries=rows,
    )
    get_run_logger().info(
        "knowledge index %s: %d abstract chunks (%d new), %d reference chunks, %d summaries",
        version,
        abstracts.chunks,
        abstracts.inserted,
        reference.chunks,
        rows,
    )
    create_table_artifact(
        key="refresh-summaries",
        table=[{"measure": k, "value": str(v)} for k, v in summary.model_dump().items()],
        description="Knowledge index and materialised summaries",
    )
    return summary
