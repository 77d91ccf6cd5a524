"""Prefect tasks of the triage lane; the work is in tasks/services/triage_lane.py."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.intake import TriageDecision
from tasks.services import triage_lane
from tasks.services.runtime import Runtime
from tasks.services.triage_lane import Booked
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(
    name="book-triage-batch",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def book_batch(settings: Settings, run_id: str, now: datetime) -> Booked:
    """Decisions, audit and ledger for the oldest unbooked cases, then the human reviews."""
    return triage_lane.book_batch(Runtime.for_settings(settings), run_id, now)


@task(
    name="settle-deferred-cases",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def settle_deferred(settings: Settings) -> int:
    """Read the narratives the service deferred when saturated, one micro-batch at a time."""
    return triage_lane.settle_deferred(Runtime.for_settings(settings))


@task(name="record-triage-review", cache_policy=NO_CACHE)
def record_review(
    settings: Settings, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
) -> TriageDecision:
    """Store a human verdict and write it to the audit chain at once (the lane books the rest)."""
    return triage_lane.record_review(
        Runtime.for_settings(settings),
        case_id,
        verdict=verdict,
        reviewer=reviewer,
        reason=reason,
        at=at,
    )
