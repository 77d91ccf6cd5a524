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
import uuid

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.settings import load_settings
from tasks.steps import resources
from tasks.steps.audit import head_label
from tasks.steps.triage import WORKFLOW, utcnow
from tasks.steps.triage_lane import book_batch, settle_deferred


class LaneParams(BaseModel):
    max_batches: int = Field(10_000, ge=1, le=1_000_000, description="micro-batches, then stop")
    idle_stop_seconds: float = Field(60.0, ge=0, le=86_400, description="stop when idle this long")
    poll_seconds: float = Field(1.0, gt=0, le=60, description="wait between empty polls")


class LaneSummary(BaseModel):
    batches: int
    cases: int
    held: int
    deferred: int
    reviews: int
    cost_usd: float


@flow(name=WORKFLOW, log_prints=False)
def urgent_ae_triage(params: LaneParams | None = None) -> LaneSummary:
    params = params or LaneParams()
    settings = load_settings()
    run_id = str(flow_run.get_id() or uuid.uuid4())
    totals = LaneSummary(batches=0, cases=0, held=0, deferred=0, reviews=0, cost_usd=0.0)
    idle_since = time.monotonic()
    for _ in range(params.max_batches):
        with concurrency(WORKFLOW, occupy=1, strict=True):
            settled = settle_deferred(settings)
            booked = book_batch(settings, run_id, utcnow())
        if settled or booked.cases or booked.reviews:
            idle_since = time.monotonic()
            totals = LaneSummary(
                batches=totals.batches + 1,
                cases=totals.cases + booked.cases,
                held=totals.held + booked.held,
                deferred=totals.deferred + booked.deferred,
                reviews=totals.reviews + booked.reviews,
                cost_usd=totals.cost_usd + booked.cost_usd,
            )
            continue
        if time.monotonic() - idle_since >= params.idle_stop_seconds:
            break
        time.sleep(params.poll_seconds)
    head = head_label(resources.audit(settings).last())
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
