"""Flow `escalation-lane`: the large model's structured verdict on the scan's escalations.

pending escalations (not yet decided by this lane) -> per chunk: ask the model (one retry on a
malformed answer, then human review), write ledger, cases, decisions -> artifact. Items whose
backend was down, or whose workflow budget is spent, stay pending; the lane stops at the first
chunk where nothing got an answer. Calls go through the supervisor (budget, throttle) and the
paid-call journal, so a killed run resumes without paying twice.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.progress import report
from tasks.core.batches import iter_chunks
from tasks.settings import load_settings
from tasks.steps import resources
from tasks.steps.audit import head_label
from tasks.steps.escalation import WORKFLOW, judge_chunk, pending_escalations
from tasks.steps.paid_calls import journal
from tasks.steps.scan import utcnow


class LaneParams(BaseModel):
    """What one run of the lane covers."""

    limit: int | None = Field(None, ge=1, le=1_000_000, description="at most this many items")


class LaneSummary(BaseModel):
    run_id: str
    pending: int
    already_decided: int
    judged: int
    outcomes: dict[str, int]
    decisions: dict[str, int]
    deferred: int
    calls: int
    replayed_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cases_written: int
    stopped_early: bool


@flow(name="escalation-lane", log_prints=False)
def escalation_lane(params: LaneParams | None = None) -> LaneSummary:
    params = params or LaneParams()
    settings = load_settings()
    logger = get_run_logger()
    run_id, now = str(flow_run.get_id() or uuid.uuid4()), utcnow()

    pending, already = pending_escalations(settings, params.limit)
    results = []
    stopped = False
    for chunk in iter_chunks(pending, settings.llm.chunk_size):
        result = judge_chunk(chunk, settings, run_id, now)
        results.append(result)
        report(sum(r.items for r in results), pending.height)
        if result.outcomes.get("deferred", 0) == result.items:
            stopped = True
            logger.warning("backend unavailable for a whole chunk: stopping; items stay pending")
            break

    pruned = journal(settings).prune(now, keep=timedelta(days=settings.llm.journal_keep_days))
    if pruned:
        logger.info(
            "paid-call journal: %d answers older than %d days dropped",
            pruned,
            settings.llm.journal_keep_days,
        )
    outcomes: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    for r in results:
        outcomes.update(r.outcomes)
        decisions.update(r.decisions)
    judged = sum(r.items for r in results)
    summary = LaneSummary(
        run_id=run_id,
        pending=pending.height,
        already_decided=already,
        judged=judged,
        outcomes=dict(outcomes),
        decisions=dict(decisions),
        deferred=outcomes.get("deferred", 0) + (pending.height - judged),
        calls=sum(r.calls for r in results),
        replayed_calls=sum(r.replayed_calls for r in results),
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        cost_usd=round(sum(r.cost_usd for r in results), 8),
        cases_written=sum(r.cases_written for r in results),
        stopped_early=stopped,
    )
    logger.info(
        "%s done: %d pending, %d judged, %d deferred, %d calls, $%.6f",
        WORKFLOW,
        summary.pending,
        judged,
        summary.deferred,
        summary.calls,
        summary.cost_usd,
    )
    create_table_artifact(
        key=WORKFLOW,
        table=[
            *({"measure": k, "value": str(v)} for k, v in summary.model_dump().items()),
            {"measure": "audit_head", "value": head_label(resources.audit(settings).last())},
        ],
        description="Counts and cost of one escalation-lane run",
    )
    return summary
