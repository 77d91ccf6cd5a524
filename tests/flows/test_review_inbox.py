"""The review loop end to end: scan -> escalation lane -> inbox -> Prefect form, API, CLI ->
audit verify.

Real flows on a small MEDLINE file of bundled records, the escalation lane's model scripted on
loopback (tests/openai_stub.py), the `review-inbox` run the lane starts through its deployment
(suspended, resumed with its input through the Prefect API), the real HTTP app and CLI, the
real audit trail.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flows.cli import app
from flows.escalation_lane import escalation_lane
from flows.nightly_literature_scan import nightly_literature_scan
from flows.triage_app import create_app
from tasks.io.lake import Lake
from tasks.services import finops
from tasks.services.finops import Period
from tasks.services.runtime import Runtime
from tasks.services.triage_access import hash_key
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline
from tests.flows.review_runs import answer, deploy_review, forget_review, form_of, review_runs, work
from tests.flows.test_escalation_lane import point_lane_at
from tests.openai_stub import OpenAIStub, Reply, verdict_json

pytestmark = pytest.mark.slow

SALT = "inbox-test-salt"
REVIEWER = {"X-API-Key": "rev-key"}


def _abstracts(folder, in_scope_count=12):
    records = [r for r in real_medline_records(400) if b"<AbstractText" in r]
    in_scope = pmids_mentioning_products(records, folder)
    inside = [r for r in records if pmid_of(r) in in_scope][:in_scope_count]
    outside = [r for r in records if pmid_of(r) not in in_scope][:4]
    return write_medline(folder / "day.xml", inside + outside)


def _scripted():
    """Every other answer an adverse event; the rest "no adverse event" (a human must close)."""
    count = {"n": 0}

    def respond(_body):
        count["n"] += 1
        return Reply(verdict_json(count["n"] % 2 == 1))

    return respond


@pytest.fixture
def review_deployment():
    """Deploys `review-inbox/review` on the harness when called; gone after the test."""
    yield deploy_review
    forget_review()


@pytest.fixture
def reviewers(isolated_home, monkeypatch):
    keys = [
        {"key_id": "dr-api", "sha256": hash_key(SALT, "rev-key"), "role": "reviewer"},
        {"key_id": "dr-cli", "sha256": hash_key(SALT, "cli-key"), "role": "reviewer"},
        {"key_id": "ward-7", "sha256": hash_key(SALT, "sub-key"), "role": "submitter"},
    ]
    monkeypatch.setenv("PHARMALANE_TRIAGE__KEY_SALT", SALT)
    monkeypatch.setenv("PHARMALANE_TRIAGE__API_KEYS", json.dumps(keys))
    return isolated_home


def _cli(monkeypatch, key, *args):
    monkeypatch.setenv("PHARMALANE_API_KEY", key)
    return CliRunner().invoke(app, list(args))


def test_scan_to_inbox_to_resolutions_to_a_verified_chain(
    reviewers, review_deployment, tmp_path, monkeypatch
):
    source = _abstracts(tmp_path)
    nightly_literature_scan(sources=[str(source)])  # no deployment yet: no review run
    assert review_runs() == []
    review_deployment()
    with OpenAIStub(_scripted()) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch, chunk_size=4)
        escalation_lane()  # starts one review run for every item not handed to one
    settings = load_settings()
    decisions = Lake(settings.lake_dir).read("decisions")
    flagged = decisions.filter(pl.col("decision").is_in(["case_candidate", "human_review"]))
    wanted = {f"literature:{i}" for i in flagged["item_id"]}
    assert len(wanted) >= 4, decisions.group_by("workflow", "decision").len()

    # every item a human must decide is in the inbox, once, with a clock
    runtime = Runtime.for_settings(settings)
    items = {i.item_id: i for i in runtime.inbox.items()}
    assert set(items) == wanted
    for item in items.values():
        assert item.clock_days == 15 and item.due_date.weekday() < 5
        assert timedelta(days=13) <= item.due_date - item.day_zero <= timedelta(days=15)
        assert item.evidence["verdicts"] and item.evidence["reason_codes"]
    assert escalation_lane().judged == 0
    assert len(review_runs()) == 1  # a re-run starts no second review run
    assert len(runtime.inbox.items()) == len(wanted)  # a re-run adds nothing

    client = TestClient(create_app(settings))
    by_form = _resolved_in_the_suspended_run(client, wanted)
    rest = sorted(wanted - {by_form})
    # the confirmed one needs a case (suspect drug, reaction) for the handoff
    first = next(i for i in rest if (items[i].evidence["case"] or {}).get("suspect_drugs"))
    second, third = [i for i in rest if i != first][:2]
    listed = client.get("/reviews", headers=REVIEWER).json()
    assert {i["item_id"] for i in listed} == wanted - {by_form}  # open ones
    shown = client.get(f"/reviews/{first}", headers=REVIEWER).json()
    assert shown["evidence"]["reference"]["item_id"] == first.split(":", 1)[1]
    body = {"verdict": "accept", "reason": "patient, drug, reaction and reporter identified"}
    assert client.post(f"/reviews/{first}", json=body, headers=REVIEWER).json()["outcome"] == (
        "confirmed_icsr"
    )
    assert (
        client.post(f"/reviews/{second}", json=body, headers={"X-API-Key": "sub-key"}).status_code
        == 403
    )

    done = _cli(monkeypatch, "cli-key", "review", "reject", second, "--reason", "no adverse event")
    assert done.exit_code == 0 and f"{second}: not_icsr by dr-cli" in done.output
    # one item attempted twice, on two paths: the second is refused and changes nothing
    assert (
        _cli(monkeypatch, "cli-key", "review", "reject", third, "--reason", "no case").exit_code
        == 0
    )
    refused = client.post(f"/reviews/{third}", json=body, headers=REVIEWER)
    assert refused.status_code == 409 and "already resolved" in refused.text
    kept = runtime.inbox.find(third)
    assert (kept.outcome, kept.reviewer) == ("not_icsr", "dr-cli")

    resolutions = [e for e in runtime.audit.entries() if e["kind"] == "human_resolution"]
    assert [(e["item_id"], e["outcome"], e["actor"]) for e in resolutions] == [
        (by_form, "not_icsr", "dr-api"),  # the reviewer key behind the review code
        (first, "confirmed_icsr", "dr-api"),
        (second, "not_icsr", "dr-cli"),
        (third, "not_icsr", "dr-cli"),
    ]
    assert all("reason" not in e and len(e["reason_sha256"]) == 64 for e in resolutions)

    _handed_off(monkeypatch, tmp_path / "handoff", [first])
    _verify_then_tamper(monkeypatch, settings.audit_dir / "trail.jsonl")
    _priced_per_outcome(runtime, settings)


def _resolved_in_the_suspended_run(client, wanted):
    """The lane's review run suspends on its most urgent item; its form resolves it."""
    (run_id,) = review_runs()
    assert work(run_id) == "suspended"
    form = form_of(run_id)
    item_id = next(i for i in wanted if form["description"].startswith(f"### Review {i}\n"))
    code = client.post(f"/reviews/{item_id}/code", headers=REVIEWER).json()["code"]
    typed = {"decision": "not_icsr", "reason": "no patient or reaction in the abstract"}
    assert answer(run_id, **typed, review_code="AAAAA-AAAAA") == "suspended"  # a wrong code
    assert form_of(run_id)["key"].endswith("-2")  # same item, asked again
    assert answer(run_id, **typed, review_code=code) == "suspended"  # resolved; the next item
    assert not form_of(run_id)["description"].startswith(f"### Review {item_id}\n")
    return item_id


def _priced_per_outcome(runtime, settings):
    today = datetime.now(UTC).date()
    period = Period(today - timedelta(days=1), today + timedelta(days=1))
    report = finops.report(runtime, period.start, period.end)
    table = {r["outcome"]: r for r in report.resolved_outcomes.to_dicts()}
    ledger = Lake(settings.lake_dir).read("ledger")
    assert report.resolved_outcomes["model_usd"].sum() == pytest.approx(ledger["cost_usd"].sum())
    assert (table["confirmed_icsr"]["items"], table["not_icsr"]["items"]) == (1, 3)
    reviewer = settings.supervisor.reviewer_cost_usd
    for outcome in ("confirmed_icsr", "not_icsr"):
        row = table[outcome]
        assert row["model_usd"] > 0  # the embedding share and the verdict calls of its items
        assert row["total_usd"] == pytest.approx(row["model_usd"] + row["items"] * reviewer)


def _handed_off(monkeypatch, folder, confirmed):
    exported = _cli(monkeypatch, "cli-key", "review", "export", str(folder))
    assert exported.exit_code == 0, exported.output
    cases = json.loads((folder / "confirmed-cases.json").read_text())
    assert sorted(c["item_id"] for c in cases) == sorted(confirmed)
    for case in cases:
        assert case["literature_reference"] == "PMID:" + case["item_id"].split(":", 1)[1]
        assert case["suspect_drugs"] and case["reactions"] and case["reviewer"]
    rows = list(csv.DictReader((folder / "confirmed-cases.csv").open()))
    assert [r["item_id"] for r in rows] == [c["item_id"] for c in cases]
    assert (folder / "confirmed-cases.csv").stat().st_mode & 0o777 == 0o600
    refused = _cli(monkeypatch, "sub-key", "review", "export", str(folder))
    assert refused.exit_code == 1  # a submitter key exports nothing


def _verify_then_tamper(monkeypatch, trail):
    verified = _cli(monkeypatch, "", "audit", "verify")
    assert verified.exit_code == 0, verified.output
    original = trail.read_bytes()
    lines = original.splitlines(keepends=True)
    edited = lines[-1].replace(b'"not_icsr"', b'"confirmed_icsr"')  # the last resolution
    trail.write_bytes(b"".join([*lines[:-1], edited]))
    assert edited != lines[-1]
    assert _cli(monkeypatch, "", "audit", "verify").exit_code == 1
    trail.write_bytes(b"".join(lines[:-1]))  # truncated: the last resolution cut off
    cut = _cli(monkeypatch, "", "audit", "verify")
    assert cut.exit_code == 1 and "head records" in cut.output
    trail.write_bytes(original)
    assert _cli(monkeypatch, "", "audit", "verify").exit_code == 0
