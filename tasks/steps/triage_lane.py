"""Prefect tasks of the triage lane: book a micro-batch of decided cases and human reviews.

One task run per micro-batch (up to ``triage.lane_batch_size`` cases), never one per case.
The store is marked only after the lake writes, and the lake writes are idempotent by key, so
a lane killed between the two re-books nothing twice.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tasks.core.audit_entries import triage_entries
from tasks.core.batches import stable_id
from tasks.core.triage_rows import (
    audit_event,
    audit_frame,
    decision_audit,
    decision_rows,
    machine_status,
)
from tasks.errors import DataContractError
from tasks.intake import TriageDecision
from tasks.io.audit import AuditTrail
from tasks.io.lake import Lake
from tasks.rules import load_models
from tasks.schemas import LEDGER, TRIAGE_AUDIT, TRIAGE_DECISION
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.audit import anchor
from tasks.steps.retry import retry_transient_only
from tasks.steps.triage import NARRATIVE_TASK, WORKFLOW, Triager

AUDIT_DATASET = "triage_audit"
DECISION_DATASET = "triage_decisions"


@dataclass(frozen=True)
class Booked:
    cases: int
    reviews: int
    held: int
    deferred: int
    cost_usd: float


def write_triage_audit(
    trail: AuditTrail, lake: Lake, events: list[dict[str, object]], stem: str, now: datetime
) -> int:
    """Append audit events: to the hash chain first (codes only), then to the lake dataset.

    Both are idempotent by event id, so a retried batch or a review booked twice (by the
    review command and by the lane) is written once.
    """
    if not events:
        return 0
    trail.append(triage_entries(events), now=now)
    return lake.append_new(
        AUDIT_DATASET,
        audit_frame(events),
        TRIAGE_AUDIT,
        keys=["event_id"],
        partition_by="day",
        stem=stem,
    )


@task(
    name="book-triage-batch",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def book_batch(settings: Settings, run_id: str, now: datetime) -> Booked:
    """Decisions, audit and ledger for the oldest unbooked cases, then the human reviews."""
    store, lake = resources.triage_store(settings), Lake(settings.lake_dir)
    trail = resources.audit(settings)
    decisions = store.pending(settings.triage.lane_batch_size)
    cost = 0.0
    if decisions:
        ids = [d.case_id for d in decisions]
        stem = stable_id(ids, "triage")
        # the reason of record goes to the audit trail first: no decision exists without one
        write_triage_audit(
            trail, lake, decision_audit(decisions, actor="triage-service"), stem, now
        )
        lake.append_new(
            DECISION_DATASET,
            decision_rows(decisions),
            TRIAGE_DECISION,
            keys=["case_id", "status"],  # a deferred case is booked again once settled
            partition_by="day",
            stem=stem,
        )
        cost = sum(d.cost_usd for d in decisions)
        catalog = load_models(settings)
        model_key = catalog.tasks[NARRATIVE_TASK]
        ledger = {
            "call_id": stable_id([*ids, model_key], "call"),
            "workflow": WORKFLOW,
            "run_id": run_id,
            "chunk_id": stem,
            "task": NARRATIVE_TASK,
            "model": model_key,
            "backend": catalog.models[model_key].backend,
            "pattern": "stream",
            "n_items": sum(1 for d in decisions if d.input_tokens),
            "input_tokens": sum(d.input_tokens for d in decisions),
            "output_tokens": 0,
            "gpu_seconds": 0.0,
            "cost_usd": cost,
            "created_at": now,
            "day": now.date().isoformat(),
        }
        lake.append_new(
            "ledger",
            pl.DataFrame([ledger]),
            LEDGER,
            keys=["call_id"],
            partition_by="day",
            stem=stem,
        )
        store.mark_bookkept(ids)
    reviews = store.reviews_pending()
    if reviews:
        events = [review_event(r) for r in reviews]
        stem = stable_id([str(e["event_id"]) for e in events], "review")
        write_triage_audit(trail, lake, events, stem, now)
        store.mark_reviews_bookkept([r["case_id"] for r in reviews])
    if decisions or reviews:
        anchor(settings, workflow=WORKFLOW, run_id=run_id, now=now)
    return Booked(
        cases=len(decisions),
        reviews=len(reviews),
        held=sum(machine_status(d) == "held_for_review" for d in decisions),
        deferred=sum(d.status == "deferred" for d in decisions),
        cost_usd=cost,
    )


def review_event(review: dict[str, str]) -> dict[str, object]:
    """The audit event of a stored review (a row of ``TriageStore.reviews_pending``)."""
    return audit_event(
        case_id=review["case_id"],
        event="reviewed",
        status=review["status"],
        actor=review["reviewer"],
        reasons=[f"HUMAN_{review['status'].upper()}"],
        reason_of_record=review["review_reason"],
        due_date=None,
        at=datetime.fromisoformat(review["reviewed_at"]),
    )


def ensure_lane_limit(limit: int = 1) -> None:
    """Create the lane's global concurrency limit unless the Prefect server has it.

    The lane acquires it strictly, so a server without it fails the lane; `make ui` creates it
    with ``prefect gcl create``, the in-process `pharmalane triage lane` with this.
    """
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(WORKFLOW)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another lane created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=WORKFLOW, limit=limit)
                )


@task(
    name="settle-deferred-cases",
    retries=2,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def settle_deferred(settings: Settings) -> int:
    """Read the narratives the service deferred when saturated, one micro-batch at a time."""
    store = resources.triage_store(settings)
    if not store.count(status="deferred"):
        return 0
    triager = Triager.build(settings, store)
    return len(triager.settle_deferred(settings.triage.lane_batch_size))


@task(name="held-triage-case", cache_policy=NO_CACHE)
def held_case(settings: Settings, case_id: str) -> TriageDecision:
    """The decision of a case that waits for a human; anything else is a contract error."""
    stored = resources.triage_store(settings).get(case_id)
    if stored is None:
        raise DataContractError(f"case {case_id} is unknown", record=case_id, field="case_id")
    if stored.decision.status != "held_for_review":
        raise DataContractError(
            f"case {case_id} is {stored.decision.status}, not held for review",
            record=case_id,
            field="status",
        )
    return stored.decision


@task(name="record-triage-review", cache_policy=NO_CACHE)
def record_review(
    settings: Settings, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
) -> TriageDecision:
    """Store a human verdict and write it to the audit chain at once (the lane books the rest).

    Stored first: a review the chain misses (a crash between the two) is still booked by the
    lane, while a chain entry for a review the store refused would be a false record.
    """
    decision = resources.triage_store(settings).review(
        case_id, verdict=verdict, reviewer=reviewer, reason=reason, at=at
    )
    row = {
        "case_id": case_id,
        "status": verdict,
        "reviewer": reviewer,
        "review_reason": reason,
        "reviewed_at": at.isoformat(),
    }
    resources.audit(settings).append(triage_entries([review_event(row)]), now=at)
    return decision
