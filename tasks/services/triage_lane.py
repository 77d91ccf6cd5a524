"""The triage lane's booking: decided cases and human reviews into the lake, trail and ledger.

One micro-batch (up to ``triage.lane_batch_size`` cases) at a time, never one per case. The
store is marked only after the lake writes, and the lake writes are idempotent by key, so a
lane killed between the two re-books nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tasks.core.audit_entries import triage_entries
from tasks.core.batches import stable_id
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.triage_rows import (
    audit_event,
    audit_frame,
    decision_audit,
    decision_rows,
    machine_status,
)
from tasks.intake import TriageDecision
from tasks.schemas import LEDGER, TRIAGE_AUDIT, TRIAGE_DECISION
from tasks.services.audit import anchor
from tasks.services.runtime import Runtime
from tasks.services.triage import NARRATIVE_TASK, WORKFLOW, Triager

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
    runtime: Runtime, events: list[dict[str, object]], stem: str, now: datetime
) -> int:
    """Append audit events: to the hash chain first (codes only), then to the lake dataset.

    Both are idempotent by event id, so a retried batch or a review booked twice (by the
    review command and by the lane) is written once.
    """
    if not events:
        return 0
    runtime.audit.append(triage_entries(events), now=now)
    return runtime.lake.append_new(
        AUDIT_DATASET,
        audit_frame(events),
        TRIAGE_AUDIT,
        keys=["event_id"],
        partition_by="day",
        stem=stem,
    )


def book_batch(runtime: Runtime, run_id: str, now: datetime) -> Booked:
    """Decisions, audit and ledger for the oldest unbooked cases, then the human reviews."""
    store = runtime.triage_store
    decisions = store.pending(runtime.settings.triage.lane_batch_size)
    if decisions:
        book_decisions(runtime, decisions, run_id, now)
    reviews = store.reviews_pending()
    if reviews:
        events = [review_event(r) for r in reviews]
        stem = stable_id([str(e["event_id"]) for e in events], "review")
        write_triage_audit(runtime, events, stem, now)
        store.mark_reviews_bookkept([r["case_id"] for r in reviews])
    if decisions or reviews:
        anchor(runtime, workflow=WORKFLOW, run_id=run_id, now=now)
    return Booked(
        cases=len(decisions),
        reviews=len(reviews),
        held=sum(machine_status(d) == "held_for_review" for d in decisions),
        deferred=sum(d.status == "deferred" for d in decisions),
        cost_usd=sum((d.cost_usd for d in decisions), 0.0),
    )


def book_decisions(
    runtime: Runtime, decisions: list[TriageDecision], run_id: str, now: datetime
) -> None:
    """Reasons of record first, then the decision rows and one ledger row; then mark them."""
    ids = [d.case_id for d in decisions]
    stem = stable_id(ids, "triage")
    # the reason of record goes to the audit trail first: no decision exists without one
    write_triage_audit(runtime, decision_audit(decisions, actor="triage-service"), stem, now)
    runtime.lake.append_new(
        DECISION_DATASET,
        decision_rows(decisions),
        TRIAGE_DECISION,
        keys=["case_id", "status"],  # a deferred case is booked again once settled
        partition_by="day",
        stem=stem,
    )
    catalog = runtime.rules.models
    model_key = catalog.tasks[NARRATIVE_TASK]
    row = ledger_row(
        call_id=stable_id([*ids, model_key], "call"),
        workflow=WORKFLOW,
        run_id=run_id,
        chunk_id=stem,
        task=NARRATIVE_TASK,
        model=model_key,
        backend=catalog.models[model_key].backend,
        pattern="stream",
        n_items=sum(1 for d in decisions if d.input_tokens),
        input_tokens=sum(d.input_tokens for d in decisions),
        cost_usd=sum((d.cost_usd for d in decisions), 0.0),
        now=now,
    )
    runtime.lake.append_new(
        "ledger", ledger_frame([row]), LEDGER, keys=["call_id"], partition_by="day", stem=stem
    )
    runtime.triage_store.mark_bookkept(ids)


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


def settle_deferred(runtime: Runtime) -> int:
    """Read the narratives the service deferred when saturated, one micro-batch at a time."""
    store = runtime.triage_store
    if not store.count(status="deferred"):
        return 0
    triager = Triager.build(runtime, store)
    return len(triager.settle_deferred(runtime.settings.triage.lane_batch_size))


def record_review(
    runtime: Runtime, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
) -> TriageDecision:
    """Store a human verdict and write it to the audit chain at once (the lane books the rest).

    Stored first: a review the chain misses (a crash between the two) is still booked by the
    lane, while a chain entry for a review the store refused would be a false record.
    """
    decision = runtime.triage_store.review(
        case_id, verdict=verdict, reviewer=reviewer, reason=reason, at=at
    )
    row = {
        "case_id": case_id,
        "status": verdict,
        "reviewer": reviewer,
        "review_reason": reason,
        "reviewed_at": at.isoformat(),
    }
    runtime.audit.append(triage_entries([review_event(row)]), now=at)
    return decision
