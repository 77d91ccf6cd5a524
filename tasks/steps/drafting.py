"""Prefect tasks of the drafting lane; the work is in tasks/services/drafting.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.services import drafting
from tasks.services.drafting import DraftRun, PeriodResult
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(name="check-draft-products", cache_policy=NO_CACHE)
def check_products(settings: Settings, products: Sequence[str] | None) -> list[str]:
    """The products to draft: the ones asked for (each must be watched), or every watched one."""
    return drafting.checked_products(Runtime.for_settings(settings), products)


@task(
    name="draft-period",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def draft_period(
    settings: Settings,
    period: str,
    products: Sequence[str],
    signals: pl.DataFrame,
    run_id: str,
    now: datetime,
) -> PeriodResult:
    """Every product's draft of one month: one task run per period, never one per product.

    A retry finds what the first try stored (keyed drafts, ledger rows and inbox items) and
    replays paid answers from the journal: nothing is stored or paid twice.
    """
    runtime = Runtime.for_settings(settings)
    return drafting.draft_period(runtime, period, products, signals, DraftRun(run_id, now))
