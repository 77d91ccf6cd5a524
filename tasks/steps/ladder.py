"""Prefect tasks of calibration and the ladder evaluation; work in tasks/services/ladder.py."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.services import ladder
from tasks.services.runtime import Runtime
from tasks.settings import Settings


@task(name="score-split", cache_policy=NO_CACHE)
def small_scores(
    rows: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """``rows`` with the small model's probability and its catalog cost per item."""
    runtime = Runtime.for_settings(settings)
    return ladder.small_scores(runtime, rows, workflow=workflow, run_id=run_id, now=now)


@task(name="large-verdicts", cache_policy=NO_CACHE)
def large_verdicts(
    sample: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """The large model's verdict per item; stored ones are reused, new calls go to the ledger."""
    logger = get_run_logger()
    return ladder.large_verdicts(
        Runtime.for_settings(settings),
        sample,
        workflow=workflow,
        run_id=run_id,
        now=now,
        progress=lambda done, total: logger.info("large verdicts: %d/%d new", done, total),
    )
