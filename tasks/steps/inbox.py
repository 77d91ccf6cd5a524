"""Prefect tasks of the review inbox; the work is in tasks/services/inbox.py."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.services import inbox
from tasks.services.inbox import Filled
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(name="fill-inbox", retries=1, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE)
def fill_inbox(settings: Settings, now: datetime) -> Filled:
    """Put what this lane left for a human into the review inbox (idempotent by item id)."""
    filled = inbox.fill(Runtime.for_settings(settings), now)
    get_run_logger().info(
        "review inbox: %d literature and %d triage items added, %d open",
        filled.literature,
        filled.triage,
        filled.open_items,
    )
    return filled


@task(name="watch-review-due-dates", cache_policy=NO_CACHE)
def watch_due(settings: Settings, within_days: int, now: datetime) -> inbox.DueWatch:
    """Open review items due within ``within_days``: one audit entry, a warning per overdue item."""
    watch = inbox.watch_due(Runtime.for_settings(settings), within_days=within_days, now=now)
    logger = get_run_logger()
    for item in watch.overdue:
        logger.warning(
            "ALERT review overdue: %s (%s) was due %s", item.item_id, item.reason, item.due_date
        )
    return watch
