"""`pharmalane review list|accept|reject` over a real store in PHARMALANE_HOME."""

from __future__ import annotations

from datetime import UTC, date, datetime

from typer.testing import CliRunner

from flows.cli import app
from tasks.io.triage_store import TriageStore
from tasks.schemas import IcsrCase, TriageDecision
from tasks.settings import load_settings
from tasks.steps.resources import triage_store
from tasks.tools import icsr


def store_case(store: TriageStore, case_id: str, status: str) -> None:
    case = IcsrCase.model_validate(
        {"case_id": case_id, "received_at": "2026-03-02T09:00:00+00:00", "narrative": "x"}
    )
    decision = TriageDecision(
        case_id=case_id, status=status, lane="hot", valid=False, missing=["patient"],
        seriousness=["hospitalisation"], serious=True, severity=3, narrative_flags=[],
        narrative_score=None, duplicate_of=None, clock_days=15, day_zero=date(2026, 3, 2),
        due_date=date(2026, 3, 17), requires_review=status == "held_for_review",
        reasons=["SERIOUS_CASE_NEEDS_HUMAN"], model=None, input_tokens=0, cost_usd=0.0,
        decided_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
    )  # fmt: skip
    store.accept(case, icsr.duplicate_fingerprint(case), decision)


def test_review_commands(isolated_home):
    store = triage_store(load_settings())
    store_case(store, "H-1", "held_for_review")
    store_case(store, "A-1", "auto_accepted")
    runner = CliRunner()

    listed = runner.invoke(app, ["review", "list"])
    assert listed.exit_code == 0 and "H-1" in listed.output and "A-1" not in listed.output

    no_reason = runner.invoke(app, ["review", "accept", "H-1", "--reviewer", "dr-x"])
    assert no_reason.exit_code != 0 and store.get("H-1").decision.status == "held_for_review"

    args = ["review", "reject", "H-1", "--reason", "duplicate of H-0", "--reviewer", "dr-x"]
    assert runner.invoke(app, args).exit_code == 0
    stored = store.get("H-1")
    assert (stored.decision.status, stored.reviewer, stored.review_reason) == (
        "rejected", "dr-x", "duplicate of H-0",
    )  # fmt: skip
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "not held for review" in again.output
    not_held = runner.invoke(app, ["review", "accept", "A-1", "--reason", "ok", "--reviewer", "x"])
    assert not_held.exit_code == 1
