"""The `review-inbox` run: suspended forms, one-time review codes, refusals that keep the run.

Real inbox, triage store, code store and audit trail in tmp_path; the run is created from its
deployment on the Prefect harness and resumed through the Prefect API with the form's input
(tests/flows/review_runs.py), as the UI's Resume button does.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flows.cli import app
from flows.review_inbox import pause_key
from flows.triage_app import create_app
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.triage_store import TriageStore
from tasks.schemas import InboxItem
from tasks.services import inbox, review_codes
from tasks.services.runtime import Runtime
from tasks.services.triage_access import hash_key
from tasks.settings import ApiKey, load_settings
from tasks.steps.review import start_review_run
from tasks.tools import icsr
from tests.flows.review_runs import answer, deploy_review, forget_review, form_of, work

SALT = "review-flow-salt"
REVIEWER = {"X-API-Key": "rev-key"}
SUBMITTER = ApiKey(key_id="ward-7", sha256=hash_key(SALT, "sub-key"), role="submitter")


@pytest.fixture
def review_deployment():
    """Deploys `review-inbox/review` on the harness when called; gone after the test."""
    yield deploy_review
    forget_review()


@pytest.fixture
def reviewers(isolated_home, monkeypatch):
    keys = [
        {"key_id": "dr-ui", "sha256": hash_key(SALT, "rev-key"), "role": "reviewer"},
        {"key_id": "dr-cli", "sha256": hash_key(SALT, "cli-key"), "role": "reviewer"},
        SUBMITTER.model_dump(),
    ]
    monkeypatch.setenv("PHARMALANE_TRIAGE__KEY_SALT", SALT)
    monkeypatch.setenv("PHARMALANE_TRIAGE__API_KEYS", json.dumps(keys))
    return isolated_home


def literature(pmid: str, priority: int) -> InboxItem:
    today = date.today()
    return InboxItem(
        item_id=f"literature:{pmid}",
        kind="literature",
        source_id=pmid,
        source="escalation-lane",
        reason="human_review",
        day_zero=today,
        clock_days=15,
        due_date=today + timedelta(days=15),
        priority=priority,
        evidence={
            "reference": {"item_id": pmid, "content_hash": "h", "pub_date": "2026-01-05"},
            "title": f"Hepatitis after drugx {pmid}",
            "abstract": "A 54-year-old woman developed acute hepatitis two weeks after drugx.",
            "products": ["drugx"],
            "verdicts": [
                {
                    "workflow": "escalation-lane",
                    "path": "large",
                    "model": "scripted",
                    "probability": 0.5,
                    "decision": "human_review",
                    "reason": "no adverse event stated, model not validated",
                }
            ],
            "case": {"suspect_drugs": ["drugx"], "reactions": ["hepatitis"], "seriousness": []},
            "reason_codes": ["PLAN_LARGE_HUMAN_REVIEW"],
        },
    )


def held(store: TriageStore) -> None:
    """A serious case with no patient, reporter, drug or reaction: held for a human."""
    case = IcsrCase.model_validate(
        {
            "case_id": "H-1",
            "received_at": "2026-03-02T09:00:00+00:00",
            "outcome": {"death": True},
            "narrative": "Found dead at home three days after the first dose.",
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


def _code(client: TestClient, item_id: str) -> str:
    issued = client.post(f"/reviews/{item_id}/code", headers=REVIEWER)
    assert issued.status_code == 200, issued.text
    return str(issued.json()["code"])


def _refused(run_id, why: str) -> dict:
    """The run is still suspended on the same item, the refusal on top of its form."""
    form = form_of(run_id)
    assert form["description"].startswith(f"**Refused: {why}:"), form["description"][:120]
    return form


@pytest.mark.slow
def test_a_batch_is_reviewed_in_suspended_forms_with_one_time_codes(
    reviewers, review_deployment, monkeypatch
):
    settings = load_settings()
    runtime = Runtime.for_settings(settings)
    runtime.inbox.add([literature("101", 1), literature("102", 3)], now=datetime.now(UTC))
    held(runtime.triage_store)  # a serious case: priority 2
    inbox.fill(runtime, datetime.now(UTC))
    review_deployment()

    run_id = start_review_run.fn(settings, datetime.now(UTC))  # what every lane calls
    assert run_id is not None and runtime.inbox.unscheduled() == []
    assert work(run_id) == "suspended"

    form = form_of(run_id)
    assert form["key"] == pause_key(runtime.inbox.find("literature:101"), 1)
    assert re.fullmatch(r"literature-101-[0-9a-f]{8}-1", form["key"])
    for shown in ("Hepatitis after drugx 101", "acute hepatitis", "drugx", "**Due:**", "15 days",
                  "no adverse event stated", "PLAN_LARGE_HUMAN_REVIEW", "priority 1"):  # fmt: skip
        assert shown in form["description"], shown
    fields = form["schema"]["properties"]
    assert set(fields) == {"decision", "reason", "review_code"}  # no reviewer name to type
    assert fields["decision"]["enum"] == ["confirmed_icsr", "not_icsr"]
    assert [fields[f]["title"] for f in ("decision", "reason", "review_code")] == [
        "Decision",
        "Reason of record",
        "Review code",
    ]

    client = TestClient(create_app(settings))
    assert (
        client.post("/reviews/literature:101/code", headers={"X-API-Key": "sub-key"}).status_code
        == 403
    )
    good = _code(client, "literature:101")
    other = _code(client, "literature:102")
    now = datetime.now(UTC)
    expired = review_codes.issue_code(
        runtime, "literature:101", settings.triage.api_keys[0], now=now - timedelta(minutes=16)
    ).code
    submitters = review_codes.issue_code(runtime, "literature:101", SUBMITTER, now=now).code
    typed = {"decision": "confirmed_icsr", "reason": "patient, drug, reaction, reporter"}
    for code, why in [
        ("ZZZZZ-ZZZZZ", "REVIEW_CODE_UNKNOWN"),
        (other, "REVIEW_CODE_OTHER_ITEM"),
        (expired, "REVIEW_CODE_EXPIRED"),
        (submitters, "REVIEW_CODE_NOT_REVIEWER"),
        ("   ", "REVIEW_FORM_BLANK"),
    ]:
        assert answer(run_id, **typed, review_code=code) == "suspended"
        kept = _refused(run_id, why)
        assert kept["schema"]["properties"]["decision"]["default"] == "confirmed_icsr"
    assert answer(run_id, decision="not_icsr", reason=" ", review_code=good) == "suspended"
    _refused(run_id, "REVIEW_FORM_BLANK")  # the code was not spent on a refused answer

    assert answer(run_id, **typed, review_code=good.lower()) == "suspended"
    assert runtime.inbox.find("literature:101").outcome == "confirmed_icsr"
    assert form_of(run_id)["key"].startswith("triage-h-1-")  # the next item, most urgent first

    # the spent code is refused everywhere, and the triage case is decided in its form
    assert answer(run_id, decision="rejected", reason="not valid", review_code=good) == "suspended"
    _refused(run_id, "REVIEW_CODE_USED")
    triage_code = _code(client, "triage:H-1")
    done = answer(run_id, decision="rejected", reason="not a valid ICSR", review_code=triage_code)
    assert done == "suspended" and form_of(run_id)["key"].startswith("literature-102-")
    stored = runtime.triage_store.get("H-1")
    assert (stored.decision.status, stored.reviewer) == ("rejected", "dr-ui")

    # resolved through the CLI while its form waits: the form's answer changes nothing
    monkeypatch.setenv("PHARMALANE_API_KEY", "cli-key")
    cli = CliRunner().invoke(app, ["review", "reject", "102", "--reason", "no adverse event"])
    assert cli.exit_code == 0, cli.output
    assert answer(run_id, **typed, review_code=other) == "completed"
    kept = runtime.inbox.find("literature:102")
    assert (kept.outcome, kept.reviewer) == ("not_icsr", "dr-cli")

    entries = runtime.audit.entries()
    resolutions = [(e["item_id"], e["actor"]) for e in entries if e["kind"] == "human_resolution"]
    assert resolutions == [
        ("literature:101", "dr-ui"),
        ("triage:H-1", "dr-ui"),
        ("literature:102", "dr-cli"),
    ]
    refusals = [e for e in entries if e["kind"] == "review_answer_refused"]
    assert len(refusals) == 7  # each refused once, however often the run was replayed
    trail = (settings.audit_dir / "trail.jsonl").read_text()
    for secret in (good, other, expired, submitters, "patient, drug", "acute hepatitis"):
        assert secret not in trail and secret.replace("-", "") not in trail


@pytest.mark.slow
def test_no_deployment_no_run_and_items_wait(reviewers):
    settings = load_settings()
    runtime = Runtime.for_settings(settings)
    runtime.inbox.add([literature("201", 3)], now=datetime.now(UTC))
    monkeypatch_off = settings.model_copy(update={"review": settings.review.model_copy(
        update={"deployment": "review-inbox/nowhere"})})  # fmt: skip
    assert start_review_run.fn(monkeypatch_off, datetime.now(UTC)) is None
    assert runtime.inbox.unscheduled() == ["literature:201"]
