from datetime import UTC, date, datetime

from tasks.core.triage_rows import decision_audit, decision_rows, machine_status
from tasks.intake import TriageDecision
from tasks.schemas import TRIAGE_AUDIT, TRIAGE_DECISION


def decision(case_id="C-1", status="held_for_review") -> TriageDecision:
    return TriageDecision(
        case_id=case_id, status=status, lane="hot", valid=True, missing=[],
        seriousness=["death"], serious=True, severity=None, narrative_flags=[],
        narrative_score=0.2, duplicate_of=None, clock_days=7, day_zero=date(2026, 3, 2),
        due_date=date(2026, 3, 9), requires_review=True, reasons=["SERIOUS_CASE_NEEDS_HUMAN"],
        model="m", input_tokens=12, cost_usd=0.1, decided_at=datetime(2026, 3, 2, 23, tzinfo=UTC),
    )  # fmt: skip


def test_decision_rows_fit_the_schema_and_carry_no_case_content():
    rows = decision_rows([decision(), decision("C-2", "auto_accepted")])
    assert rows.columns == TRIAGE_DECISION.names
    assert rows["day"].to_list() == ["2026-03-02", "2026-03-02"]
    assert rows["severity"].to_list() == [None, None]  # unknown stays unknown, not 0


def test_audit_event_ids_are_stable_and_a_review_keeps_the_machine_status():
    reviewed = decision(status="rejected")
    first, again = decision_audit([reviewed], "svc"), decision_audit([reviewed], "svc")
    assert first[0]["event_id"] == again[0]["event_id"]
    assert first[0]["status"] == machine_status(reviewed) == "held_for_review"
    assert set(first[0]) == set(TRIAGE_AUDIT.names)
    other = decision_audit([decision("C-2")], "svc")
    assert other[0]["event_id"] != first[0]["event_id"]
