"""Prefect tasks of the knowledge layer's refresh; the work is in tasks/services/knowledge.py.

`ask` itself is plain Python (an interactive answer from cache takes milliseconds, a Prefect
task run far longer). The FAERS signal table uses a Prefect cache policy keyed on the shipped
data's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.io import faers
from tasks.services import knowledge
from tasks.services.knowledge import IndexResult
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


def _faers_key(context: Any, parameters: dict[str, Any]) -> str:
    return f"faers-signals-{faers.table_digest()}"


@task(
    name="faers-signals",
    cache_key_fn=_faers_key,
    cache_expiration=timedelta(days=7),
    persist_result=True,
    result_serializer="json",  # columns of plain values: no pickle in the result store
)
def faers_signals() -> dict[str, list[Any]]:
    """PRR / ROR per FAERS pair as columns; cached by Prefect on the shipped tables' hash."""
    return knowledge.faers_signal_columns()


@task(
    name="index-abstracts",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def index_abstracts(settings: Settings, sources: Sequence[str] | None = None) -> IndexResult:
    """Chunks of every abstract the nightly scan found about a watched product."""
    return knowledge.index_abstracts(Runtime.for_settings(settings), sources)


@task(
    name="index-reference",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def index_reference(settings: Settings, signals: pl.DataFrame) -> IndexResult:
    """Dictionary identity + FAERS sections for every watched product."""
    return knowledge.index_reference(Runtime.for_settings(settings), signals)


@task(name="publish-index-version", cache_policy=NO_CACHE)
def publish_index_version(settings: Settings, now: datetime) -> str:
    """New manifest version; cache entries of any other version are dropped (invalidation)."""
    return knowledge.publish_index_version(Runtime.for_settings(settings), now)


@task(
    name="materialise-summaries",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def materialise_summaries(
    settings: Settings, signals: pl.DataFrame, index_version: str, now: datetime
) -> int:
    """Per-product 'latest ADE literature' and 'signal digest' rows, replaced on each refresh."""
    return knowledge.materialise_summaries(
        Runtime.for_settings(settings), signals, index_version, now
    )
