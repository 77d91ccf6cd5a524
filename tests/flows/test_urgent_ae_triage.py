"""The lane books what the service decided, settles deferred cases, idempotent on re-run."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from prefect import get_client
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

from flows.urgent_ae_triage import urgent_ae_triage
from tasks.intake import IcsrCase
from tasks.io.lake import Lake
from tasks.io.orchestrator import ensure_global_limit
from tasks.services.audit import verify
from tasks.services.runtime import Runtime
from tasks.services.triage import WORKFLOW, Triager
from tasks.settings import load_settings


@pytest.fixture(autouse=True)
def lane_limit() -> None:
    """The lane's global concurrency limit, as `make ui` creates it (the lane needs it)."""
    ensure_global_limit(WORKFLOW)


def case(i: int, **fields) -> IcsrCase:
    body = {
        "case_id": f"L-{i}",
        "received_at": "2026-03-02T09:00:00+00:00",
        "reporter": {"qualification": "pharmacist"},
        "patient": {"age_years": 40 + i, "sex": "M"},
        "suspect_drugs": ["Xanomeline"],
        "reactions": [{"term": "Dizziness", "severity_grade": 1}],
        "narrative": "Felt dizzy for an hour after the dose.",
    }
    return IcsrCase.model_validate(body | fields)


@pytest.mark.slow
def test_lane_books_decisions_audit_and_ledger_once(isolated_home):
    settings = load_settings()
    triager = Triager.build(Runtime.for_settings(settings))
    decisions = [triager.triage(case(i), "k-sub")[0] for i in range(2)]
    held, _ = triager.triage(case(9, outcome={"hospitalisation": True}), "k-sub")
    for i in range(settings.triage.max_in_flight):  # saturated: a non-urgent case defers
        triager.slots.acquire(f"busy-{i}", timeout=0)
    deferred, _ = triager.triage(case(2, narrative="She died in her sleep that night."), "k-sub")
    assert (deferred.status, deferred.input_tokens) == ("deferred", 0)
    triager.store.review(
        held.case_id,
        verdict="accepted",
        reviewer="k-rev",
        reason="hospitalised, expedite 15-day",
        at=datetime(2026, 3, 3, tzinfo=UTC),
    )

    summary = urgent_ae_triage(idle_stop_seconds=0, poll_seconds=0.1)

    assert (summary.cases, summary.held, summary.reviews) == (4, 2, 1)  # L-2 settled as held
    lake = Lake(settings.lake_dir)
    booked = lake.read("triage_decisions").sort("case_id")
    assert booked["case_id"].to_list() == ["L-0", "L-1", "L-2", "L-9"]
    assert "narrative" not in booked.columns
    settled = booked.filter(pl.col("case_id") == "L-2").row(0, named=True)
    assert settled["status"] == "held_for_review" and "death" in settled["narrative_flags"]
    assert "NARRATIVE_SERIOUSNESS_NEEDS_HUMAN" in settled["reasons"] and settled["cost_usd"] > 0

    audit = lake.read("triage_audit")
    reviewed = audit.filter(pl.col("event") == "reviewed").row(0, named=True)
    assert (reviewed["case_id"], reviewed["actor"], reviewed["status"]) == (
        "L-9",
        "k-rev",
        "accepted",
    )
    assert reviewed["reason_of_record"] == "hospitalised, expedite 15-day"
    decided = audit.filter(pl.col("event") == "decided")
    assert decided.height == 4
    l9 = decided.filter(pl.col("case_id") == "L-9").row(0, named=True)
    assert l9["status"] == "held_for_review" and "SERIOUS_CASE_NEEDS_HUMAN" in l9["reasons"]

    ledger = lake.read("ledger")
    paid = sum(d.cost_usd for d in decisions) + held.cost_usd + settled["cost_usd"]
    assert ledger["cost_usd"].sum() == pytest.approx(paid)
    assert set(ledger["workflow"]) == {"urgent-ae-triage"}

    again = urgent_ae_triage(idle_stop_seconds=0, poll_seconds=0.1)
    assert (again.cases, again.reviews) == (0, 0)
    assert lake.read("triage_decisions").height == 4
    assert lake.read("triage_audit").height == 5

    # every decision and review of the lake is in the keyed chain too, with the same facts
    chain = Runtime.for_settings(settings).audit.entries()
    events = lake.read("triage_audit").select("event", "case_id", "status", "actor").rows()
    assert len(chain) == 5
    assert sorted((e["kind"], e["case_id"], e["status"], e["actor"]) for e in chain) == sorted(
        (f"triage_{event}", case_id, status, actor) for event, case_id, status, actor in events
    )
    check = verify(Runtime.for_settings(settings))
    assert check.verification.ok and check.anchors >= 1


def test_without_its_concurrency_limit_the_lane_fails_instead_of_running_unlimited(isolated_home):
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(WORKFLOW)
    try:
        with pytest.raises(ConcurrencySlotAcquisitionError, match="must be created"):
            urgent_ae_triage(max_batches=1, idle_stop_seconds=0)
        assert not Lake(load_settings().lake_dir).files("triage_decisions")
    finally:
        ensure_global_limit(WORKFLOW)
