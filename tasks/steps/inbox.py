"""Prefect task of the review inbox; the work is in tasks/services/inbox.py."""

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
