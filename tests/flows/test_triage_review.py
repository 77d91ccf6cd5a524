"""A held case is decided through a paused `triage-review` run and its typed input form."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from flows.triage_review import triage_review
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.triage_store import TriageStore
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tasks.tools import icsr


def held(store: TriageStore) -> None:
    case = IcsrCase.model_validate(
        {
            "case_id": "H-1",
            "received_at": "2026-03-02T09:00:00+00:00",
            "outcome": {"death": True},
        }
    )
    decision = TriageDecision(
        case_id="H-1", status="held_for_review", lane="hot", valid=False,
        missing=["patient", "reporter", "suspect_drugs", "reactions"], seriousness=["death"],
        serious=True, severity=None, narrative_flags=[], narrative_score=None, duplicate_of=None,
        clock_days=15, day_zero=date(2026, 3, 2), due_date=date(2026, 3, 17),
        requires_review=True, reasons=["SERIOUS_CASE_NEEDS_HUMAN"], model=None, input_tokens=0,
        cost_usd=0.0, decided_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
    )  # fmt: skip
    store.accept(case, icsr.duplicate_fingerprint(case), decision, submitter="k-sub")


def paused_run_id(deadline_s: float = 60.0):
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    end = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < end:
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                return runs[0].id
            time.sleep(0.5)
    raise AssertionError("the review run never paused")


@pytest.mark.slow
def test_reviewer_answers_the_paused_run_form(isolated_home):
    store = Runtime.for_settings(load_settings()).triage_store
    held(store)
    outcome: dict[str, str] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(status=triage_review("H-1", 60, poll_seconds=1))
    )
    runner.start()
    resume_flow_run(
        paused_run_id(),
        run_input={"verdict": "reject", "reason": "not a valid ICSR", "reviewer": "dr-x"},
    )
    runner.join(timeout=90)
    assert outcome == {"status": "rejected"}
    stored = store.get("H-1")
    assert (stored.reviewer, stored.review_reason) == ("dr-x", "not a valid ICSR")
