"""Flow `urgent-ae-triage`: the long-running lane that books what the intake service decided.

The hot path (POST /cases) decides inline and stores the decision durably; this lane drains
the store in micro-batches (decisions, audit trail, cost ledger) and settles the cases the
service deferred when it was saturated (their narratives are read here), under the global
concurrency limit ``urgent-ae-triage`` (``prefect gcl create urgent-ae-triage --limit 1``;
`make ui` creates it), so at most one lane books at a time. The limit is strict: without it the
lane fails at its first batch instead of running unlimited beside another lane. It stops after
``max_batches`` or ``idle_stop_seconds`` with nothing to do; a restart continues from the store,
losing and re-booking nothing. Its artifact records the audit head it reached.
"""

from __future__ import annotations

import time
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.concurrency.sync import concurrency
from pydantic import BaseModel, Field

from flows.runs import run_id
from tasks.services.audit import head_label
from tasks.services.runtime import Runtime, utcnow
from tasks.services.triage import WORKFLOW
from tasks.settings import Settings, load_settings
from tasks.steps.inbox import fill_inbox
from tasks.steps.review import start_review_run
from tasks.steps.triage_lane import book_batch, settle_deferred


class TriageLaneSummary(BaseModel):
    batches: int
    cases: int
    held: int
    deferred: int
    reviews: int
    cost_usd: float


def _hand_held_to_review(settings: Settings, handed_at: float | None) -> float:
    """Put held cases in the inbox and start a review run for them, at most every
    ``review.triage_start_every_seconds`` (always when ``handed_at`` is None: the lane stops).
    Returns when cases were last handed over."""
    now = time.monotonic()
    if handed_at is not None and now - handed_at < settings.review.triage_start_every_seconds:
        return handed_at
    fill_inbox(settings, utcnow())  # held cases, with their clocks
    start_review_run(settings, utcnow())
    return now


@flow(name=WORKFLOW, log_prints=False)
def urgent_ae_triage(
    max_batches: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000,
    idle_stop_seconds: Annotated[float, Field(ge=0, le=86_400)] = 60.0,
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0,
) -> TriageLaneSummary:
    """Book what the intake service decided, in micro-batches, until idle or done.

    Args:
        max_batches: micro-batches, then stop
        idle_stop_seconds: stop when idle this long
        poll_seconds: wait between empty polls
    """
    settings = load_settings()
    run = run_id()
    totals = TriageLaneSummary(batches=0, cases=0, held=0, deferred=0, reviews=0, cost_usd=0.0)
    idle_since = handed_at = time.monotonic()
    for _ in range(max_batches):
        with concurrency(WORKFLOW, occupy=1, strict=True):
            settled = settle_deferred(settings)
            booked = book_batch(settings, run, utcnow())
        if booked.held:
            handed_at = _hand_held_to_review(settings, handed_at)
        if settled or booked.cases or booked.reviews:
            idle_since = time.monotonic()
            totals = TriageLaneSummary(
                batches=totals.batches + 1,
                cases=totals.cases + booked.cases,
                held=totals.held + booked.held,
                deferred=totals.deferred + booked.deferred,
                reviews=totals.reviews + booked.reviews,
                cost_usd=totals.cost_usd + booked.cost_usd,
            )
            continue
        if time.monotonic() - idle_since >= idle_stop_seconds:
            break
        time.sleep(poll_seconds)
    _hand_held_to_review(settings, None)
    head = head_label(Runtime.for_settings(settings).audit.last())
    create_table_artifact(
        key=WORKFLOW,
        table=[
            *({"measure": k, "value": str(v)} for k, v in totals.model_dump().items()),
            {"measure": "audit_head", "value": head},
        ],
        description="Counts and cost of one triage-lane run; audit_head anchors the audit trail",
    )
    get_run_logger().info(
        "lane booked %d cases (%d held, %d deferred) and %d reviews in %d batches",
        totals.cases,
        totals.held,
        totals.deferred,
        totals.reviews,
        totals.batches,
    )
    return totals
