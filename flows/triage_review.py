"""Flow `triage-review`: a held case waits in the Prefect UI for a reviewer's typed answer.

The run pauses with a form (ReviewInput: verdict, reason of record, reviewer); the answer is
stored like one from `pharmalane review accept|reject`, and the lane books it to the audit
trail. The form shows the decision's facts, never the narrative or patient fields.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from tasks.errors import PolicyDenied
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.triage_lane import held_case, record_review


class ReviewInput(RunInput):
    verdict: Literal["accept", "reject"] = Field(description="accept or reject the held case")
    reason: str = Field(min_length=3, max_length=2000, description="the reason of record")
    reviewer: str = Field(min_length=1, max_length=100, description="who decides")


@flow(name="triage-review", log_prints=False)
def triage_review(case_id: str, timeout_seconds: int = 3600, poll_seconds: int = 10) -> str:
    """Pause with the review form until a reviewer answers; store the answer.

    Args:
        case_id: the held case
        timeout_seconds: give up (REVIEW_TIMEOUT) when no reviewer answers this long
        poll_seconds: how often the paused run looks for an answer
    """
    settings = load_settings()
    decision = held_case(settings, case_id)
    facts = (
        f"Case {decision.case_id}: due {decision.due_date} ({decision.clock_days}-day clock); "
        f"seriousness {decision.seriousness or 'none'}; severity {decision.severity}; "
        f"valid {decision.valid}; reasons {', '.join(decision.reasons)}"
    )
    answer = pause_flow_run(
        wait_for_input=ReviewInput.with_initial_data(description=facts, reviewer=""),
        timeout=timeout_seconds,
        poll_interval=poll_seconds,
    )
    if answer is None:
        raise PolicyDenied("REVIEW_TIMEOUT", f"no reviewer answered for case {case_id}")
    verdict = "accepted" if answer.verdict == "accept" else "rejected"
    return record_review(
        settings,
        case_id,
        verdict=verdict,
        reviewer=answer.reviewer,
        reason=answer.reason,
        at=utcnow(),
    ).status
