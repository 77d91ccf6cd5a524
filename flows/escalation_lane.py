"""Flow `escalation-lane`: the large model's structured verdict on the scan's escalations.

pending escalations (not yet decided by this lane) -> per chunk: ask the model (one retry on a
malformed answer, then human review), write ledger, cases, decisions -> artifact. Items whose
backend was down, or whose workflow budget is spent, stay pending; the lane stops at the first
chunk where nothing got an answer. Calls go through the supervisor (budget, throttle) and the
paid-call journal, so a killed run resumes without paying twice.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from flows.progress import report
from flows.runs import run_id
from tasks.core.batches import fold, iter_chunks
from tasks.services.audit import head_label
from tasks.services.escalation import WORKFLOW, LaneChunkResult, prune_journal
from tasks.services.runtime import Runtime, utcnow
from tasks.settings import load_settings, with_llm_model
from tasks.steps.escalation import judge_chunk, pending_escalations
from tasks.steps.inbox import fill_inbox
from tasks.steps.review import start_review_run


class EscalationSummary(BaseModel):
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
def escalation_lane(
    limit: Annotated[int | None, Field(ge=1, le=1_000_000)] = None,
    model: str | None = None,
) -> EscalationSummary:
    """Ask the large model about the scan's pending escalations.

    Args:
        limit: at most this many items
        model: model key of configs/models.yaml serving the verdicts; default llm.model
    """
    settings = with_llm_model(load_settings(), model)
    logger = get_run_logger()
    run, now = run_id(), utcnow()
    pending, already = pending_escalations(settings, limit)
    results = []
    stopped = False
    for chunk in iter_chunks(pending, settings.llm.chunk_size):
        result = judge_chunk(chunk, settings, run, now)
        results.append(result)
        report(sum(r.items for r in results), pending.height)
        if result.outcomes.get("deferred", 0) == result.items:
            stopped = True
            logger.warning("backend unavailable for a whole chunk: stopping; items stay pending")
            break
    fill_inbox(settings, now)  # case candidates and human reviews, with their clocks
    start_review_run(settings, now)  # one review-inbox run for them (when deployed)
    runtime = Runtime.for_settings(settings)
    pruned = prune_journal(runtime, now)
    if pruned:
        logger.info(
            "paid-call journal: %d answers older than %d days dropped",
            pruned,
            settings.llm.journal_keep_days,
        )
    summary = _summary(run, pending.height, already, results, stopped)
    _publish(runtime, summary)
    return summary


def _summary(
    run: str, pending: int, already: int, results: list[LaneChunkResult], stopped: bool
) -> EscalationSummary:
    totals = fold(results, LaneChunkResult)
    outcomes = totals["outcomes"]
    return EscalationSummary(
        run_id=run,
        pending=pending,
        already_decided=already,
        judged=totals["items"],
        outcomes=outcomes,
        decisions=totals["decisions"],
        deferred=outcomes.get("deferred", 0) + (pending - totals["items"]),
        calls=totals["calls"],
        replayed_calls=totals["replayed_calls"],
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        cost_usd=round(totals["cost_usd"], 8),
        cases_written=totals["cases_written"],
        stopped_early=stopped,
    )


def _publish(runtime: Runtime, summary: EscalationSummary) -> None:
    get_run_logger().info(
        "%s done: %d pending, %d judged, %d deferred, %d calls, $%.6f",
        WORKFLOW,
        summary.pending,
        summary.judged,
        summary.deferred,
        summary.calls,
        summary.cost_usd,
    )
    create_table_artifact(
        key=WORKFLOW,
        table=[
            *({"measure": k, "value": str(v)} for k, v in summary.model_dump().items()),
            {"measure": "audit_head", "value": head_label(runtime.audit.last())},
        ],
        description="Counts and cost of one escalation-lane run",
    )
