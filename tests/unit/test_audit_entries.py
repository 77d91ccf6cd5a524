from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import polars as pl

from tasks.core.audit_entries import decision_entries, triage_entries
from tasks.core.triage_rows import audit_event


def test_decision_entries_keep_codes_and_ids_never_the_prose():
    decided = pl.DataFrame(
        {
            "item_id": ["pmid-1", "pmid-2"],
            "content_hash": ["h1", "h2"],
            "workflow": ["nightly-literature-scan"] * 2,
            "run_id": ["r1"] * 2,
            "chunk_id": ["c1"] * 2,
            "route": ["warm", "cold"],
            "path": ["escalate", "tool"],
            "decision": ["escalated", "closed_negative"],
            "reason": ["small model unsure: 0.0069 <= p < 0.4631 (p = 0.1)", "no product"],
            "probability": [0.1, None],
            "model": ["minilm-scorer", None],
            "cost_usd": [5.12e-06, 0.0],
            "title": ["Hepatotoxicity of drug X in a 54-year-old woman", "t"],
        }
    )
    entries = decision_entries(decided)
    assert entries[0] == {
        "key": "decision:nightly-literature-scan:pmid-1:h1",
        "kind": "decision",
        "workflow": "nightly-literature-scan",
        "run_id": "r1",
        "chunk_id": "c1",
        "item_id": "pmid-1",
        "content_hash": "h1",
        "route": "warm",
        "path": "escalate",
        "decision": "escalated",
        "reason_codes": ["PLAN_ESCALATE_ESCALATED"],
        "probability": 0.1,
        "model": "minilm-scorer",
        "cost_usd": 5.12e-06,
    }
    assert entries[1]["reason_codes"] == ["PLAN_TOOL_CLOSED_NEGATIVE"]
    assert entries[1]["probability"] is None
    assert not any("title" in e or "reason" in e for e in entries)


def test_triage_entries_keep_the_codes_and_only_a_hash_of_a_reviewers_reason():
    at = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    decided = audit_event(
        case_id="C-1", event="decided", status="held_for_review", actor="triage-service",
        reasons=["SERIOUS_CASE_NEEDS_HUMAN"], reason_of_record="SERIOUS_CASE_NEEDS_HUMAN",
        due_date=date(2026, 3, 17), at=at,
    )  # fmt: skip
    reviewed = audit_event(
        case_id="C-1", event="reviewed", status="accepted", actor="dr-x",
        reasons=["HUMAN_ACCEPTED"], reason_of_record="patient died at home", due_date=None, at=at,
    )  # fmt: skip
    first, second = triage_entries([decided, reviewed])
    assert first == {
        "key": f"triage:{decided['event_id']}",
        "kind": "triage_decided",
        "workflow": "urgent-ae-triage",
        "case_id": "C-1",
        "status": "held_for_review",
        "actor": "triage-service",
        "reason_codes": ["SERIOUS_CASE_NEEDS_HUMAN"],
        "due_date": "2026-03-17",
        "at": "2026-03-03T08:00:00+00:00",
    }
    assert second["reason_sha256"] == hashlib.sha256(b"patient died at home").hexdigest()
    assert "patient died at home" not in str(second)
    assert triage_entries([reviewed]) == [second]  # the same event, the same entry and key
