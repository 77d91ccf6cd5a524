"""A held triage case resolved by a reviewer in the real Prefect UI form, headless Chromium.

The `review` deployment of prefect.yaml is deployed to the test's Prefect server with a process
worker on its pool, as `make ui` does. The triage lane (in this process) holds a serious case,
puts it in the inbox and starts the `review-inbox` run through that deployment; the worker
runs it until it suspends with the case's form, and again after each resume. The reviewer types a
wrong code first: Prefect takes the input, the run refuses it and suspends again on the same
case, nothing resolved. Then a one-time code obtained with the reviewer's key through the HTTP
API resolves the case, as that reviewer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from flows.review_inbox import review_inbox
from flows.triage_app import create_app
from flows.urgent_ae_triage import urgent_ae_triage
from tasks.intake import IcsrCase
from tasks.io.orchestrator import ensure_global_limit
from tasks.services.runtime import Runtime
from tasks.services.triage import WORKFLOW, Triager
from tasks.services.triage_access import hash_key
from tasks.settings import load_settings
from tests.browser.runs import suspended, wait_for_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a real server, worker and browser
REPO = Path(__file__).resolve().parents[2]

SALT = "browser-review-salt"
KEYS = [
    {"key_id": "dr-ui", "sha256": hash_key(SALT, "rev-key"), "role": "reviewer"},
    {"key_id": "ward-7", "sha256": hash_key(SALT, "sub-key"), "role": "submitter"},
]


@pytest.fixture
def reviewer_env(isolated_home, monkeypatch) -> dict[str, str]:
    """One home and one key registry for this process and the runner."""
    env = {
        "PHARMALANE_HOME": str(isolated_home),
        "PHARMALANE_TRIAGE__KEY_SALT": SALT,
        "PHARMALANE_TRIAGE__API_KEYS": json.dumps(KEYS),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def hold_a_serious_case() -> None:
    """The intake service triages a hospitalisation case: held for a human."""
    case = IcsrCase.model_validate(
        {
            "case_id": "B-1",
            "received_at": "2026-03-02T09:00:00+00:00",
            "reporter": {"qualification": "pharmacist"},
            "patient": {"age_years": 61, "sex": "F"},
            "suspect_drugs": ["Xanomeline"],
            "reactions": [{"term": "Syncope", "severity_grade": 3}],
            "outcome": {"hospitalisation": True},
            "narrative": "Fainted at home and was admitted overnight after the second dose.",
        }
    )
    triager = Triager.build(Runtime.for_settings(load_settings()))
    decision, _ = triager.triage(case, "ward-7")
    assert decision.status == "held_for_review", decision


@pytest.fixture
def review_worker(prefect_cli, reviewer_env, background) -> None:
    """The `review` deployment from prefect.yaml and a process worker on its pool."""
    prefect_cli("work-pool", "create", "stream", "--type", "process")
    prefect_cli("deploy", "--name", "review", env={"PHARMALANE_REPO": str(REPO)})
    prefect = str(Path(sys.executable).with_name("prefect"))
    background(
        [prefect, "worker", "start", "--pool", "stream"],
        env=reviewer_env | {"PHARMALANE_REPO": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"},
    )


def the_review_run() -> UUID:
    """The one `review-inbox` run the lane started."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[review_inbox.name]))
        )
    assert len(runs) == 1, runs
    return runs[0].id


def test_a_held_case_is_resolved_in_the_prefect_ui_form_with_a_one_time_code(
    review_worker, resume_in_browser
):
    ensure_global_limit(WORKFLOW)
    hold_a_serious_case()
    assert urgent_ae_triage(idle_stop_seconds=0, poll_seconds=0.1).held == 1
    run_id = the_review_run()
    wait_for_state(run_id, suspended)

    typed = {"Decision": "accepted", "Reason of record": "hospitalised: expedite, 15-day clock"}
    wrong = resume_in_browser(str(run_id), typed | {"Review code": "ZZZZZ-ZZZZZ"})
    assert (wrong.ok, wrong.outcome) == (True, "submitted"), wrong.explain()
    for shown in ("B-1", "Xanomeline", "Syncope", "hospitalisation"):
        assert shown in wrong.description, (shown, wrong.description)
    refused = wait_for_state(
        run_id, lambda s: suspended(s) and str(s.state_details.pause_key).endswith("-2")
    )
    runtime = Runtime.for_settings(load_settings())
    item = runtime.inbox.find("triage:B-1")
    assert item is not None and item.status == "open"
    held = runtime.triage_store.get("B-1")
    assert held is not None and held.decision.status == "held_for_review"

    api = TestClient(create_app(load_settings()))
    issued = api.post("/reviews/triage:B-1/code", headers={"X-API-Key": "rev-key"})
    assert issued.status_code == 200, issued.text
    right = resume_in_browser(str(run_id), typed | {"Review code": issued.json()["code"]})
    assert (right.ok, right.outcome) == (True, "submitted"), right.explain()
    assert right.description.startswith("Refused: REVIEW_CODE_UNKNOWN"), right.description[:200]
    assert wait_for_state(run_id, lambda s: s.is_final()).is_completed(), refused

    resolved = runtime.inbox.find("triage:B-1")
    assert resolved is not None
    assert (resolved.status, resolved.outcome, resolved.reviewer) == (
        "resolved",
        "accepted",
        "dr-ui",
    )
    stored = runtime.triage_store.get("B-1")
    assert stored is not None
    assert (stored.decision.status, stored.reviewer) == ("accepted", "dr-ui")
    assert stored.review_reason == "hospitalised: expedite, 15-day clock"
    kinds = [e["kind"] for e in runtime.audit.entries()]
    assert "review_answer_refused" in kinds and "human_resolution" in kinds
