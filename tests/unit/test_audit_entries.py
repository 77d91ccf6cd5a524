from __future__ import annotations

import polars as pl

from tasks.core.audit_entries import decision_entries


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
