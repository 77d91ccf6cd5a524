"""A suspended run's typed form, filled and submitted in the real Prefect UI by headless Chromium.

The flow (review_form_flow.py) suspends with a form shaped like the review form: an enum
decision, a reason, a one-time code. It is served by a runner process, so the resumed run
executes again there and returns the typed values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from tests.browser.review_form_flow import DEPLOYMENT, browser_form_review
from tests.browser.runs import suspended, wait_for_deployment, wait_for_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a real server, worker and browser


@pytest.fixture
def answers(background, tmp_path: Path) -> Path:
    """The folder where the served flow writes each resumed run's answer."""
    out = tmp_path / "answers"
    out.mkdir()
    background([sys.executable, "-m", "tests.browser.review_form_flow", str(out)])
    return out


def start_suspended_run(answers: Path) -> UUID:
    """A new run of the served deployment, once it has suspended with its form."""
    deployment = wait_for_deployment(f"{browser_form_review.name}/{DEPLOYMENT}")
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment, parameters={"out_dir": str(answers)}
        )
    wait_for_state(run.id, suspended)
    return run.id


@pytest.mark.parametrize("ui", ["v1", "v2"])
def test_the_browser_resumes_the_run_with_the_values_typed_in_the_form(
    answers: Path, resume_in_browser, ui: str
):
    run_id = start_suspended_run(answers)
    typed = {"Decision": "not_icsr", "Reason": "no adverse event reported", "Code": "Kq7-w9Zp"}
    result = resume_in_browser(str(run_id), typed, ui=ui)
    assert (result.ok, result.outcome) == (True, "submitted"), result.explain()
    assert result.description == "Item PMID 1: a test item"
    assert wait_for_state(run_id, lambda s: s.is_final()).is_completed()
    assert json.loads((answers / f"{run_id}.json").read_text()) == {
        "decision": "not_icsr", "reason": "no adverse event reported", "code": "Kq7-w9Zp"
    }  # fmt: skip


def test_a_blank_field_is_refused_by_the_form_and_the_run_stays_suspended(
    answers: Path, resume_in_browser
):
    run_id = start_suspended_run(answers)
    result = resume_in_browser(str(run_id), {"Decision": "confirm_icsr", "Reason": "ok fine"})
    assert (result.ok, result.outcome) == (True, "refused"), result.explain()
    assert "'code' is a required property" in result.messages
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None and suspended(state), state
    assert not (answers / f"{run_id}.json").exists()
