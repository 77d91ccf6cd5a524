"""Prefect tasks of the escalation lane; the work is in tasks/services/escalation.py."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.services import escalation
from tasks.services.escalation import LaneChunkResult
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(name="pending-escalations", cache_policy=NO_CACHE)
def pending_escalations(settings: Settings, limit: int | None) -> tuple[pl.DataFrame, int]:
    """Escalations the lane has not decided yet (hot first, then by id), and how many it has."""
    return escalation.pending_escalations(Runtime.for_settings(settings), limit)


@task(
    name="judge-escalations",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def judge_chunk(
    chunk: pl.DataFrame, settings: Settings, run_id: str, now: datetime
) -> LaneChunkResult:
    """Verdicts for one chunk, asked through the supervisor and the paid-call journal."""
    result = escalation.judge_chunk(Runtime.for_settings(settings), chunk, run_id, now)
    get_run_logger().info(
        "chunk %s: %d items, outcomes %s, %d calls (%d replayed from the journal)",
        result.chunk_id,
        result.items,
        result.outcomes,
        result.calls,
        result.replayed_calls,
    )
    return result
