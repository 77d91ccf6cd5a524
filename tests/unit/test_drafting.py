"""Periodic-summary drafting, pure parts: months, numbered evidence, versions, cost per
accepted summary."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from tasks.core.drafting import (
    evidence_items,
    evidence_version,
    month_bounds,
    months_between,
    previous_month,
)
from tasks.core.finops import cost_per_accepted_summary

SIGNALS = pl.DataFrame(
    {
        "table": ["t1", "t1", "t1", "t1"],
        "drug": ["propranolol", "propranolol", "propranolol", "timolol"],
        "event": ["Bradycardia", "Rash", "Never Reported", "Bradycardia"],
        "reports": [12, 4, 0, 9],
        "prr": [3.0, 1.1, None, 2.0],
        "prr_lower": [2.0, 0.5, None, 1.5],
        "prr_upper": [4.5, 2.4, None, 2.7],
        "ror": [3.4, 1.1, None, 2.1],
        "ror_lower": [2.2, 0.5, None, 1.6],
        "ror_upper": [5.1, 2.5, None, 2.8],
        "signal": [True, False, False, True],
    }
)
SUMMARIES = pl.DataFrame(
    {
        "product": ["propranolol", "propranolol"],
        "kind": ["signals", "literature"],
        "text": ["FAERS signal digest for propranolol: ...", "Latest ADE literature: ..."],
    }
)
CASE = {
    "item_id": "literature:123",
    "reference": "PMID:123",
    "confirmed_on": "2026-11-20",
    "suspect_drugs": ["propranolol"],
    "reactions": ["bradycardia"],
    "seriousness": ["hospitalisation"],
    "summary": "",
}


def test_months_bound_a_backfill_and_the_schedule_drafts_last_month():
    assert month_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    assert months_between("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert previous_month(date(2027, 1, 2)) == "2026-12"
    assert previous_month(date(2026, 12, 2)) == "2026-11"
    for bad in ("2026-13", "2026-1", "Nov 2026"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds(bad)
    with pytest.raises(ValueError, match="before its start"):
        months_between("2026-12", "2026-11")


def test_evidence_is_numbered_summaries_then_faers_with_reports_then_cases():
    items = evidence_items("propranolol", SUMMARIES, SIGNALS, [CASE], faers_top_n=5)
    assert [(i.id, i.kind, i.source) for i in items] == [
        ("1", "literature_summary", "summary:literature"),
        ("2", "signals_summary", "summary:signals"),
        ("3", "faers", "faers:t1:Bradycardia"),  # the signal first, another drug's never
        ("4", "faers", "faers:t1:Rash"),  # a pair with no report is no evidence
        ("5", "case", "case:literature:123"),
    ]
    assert items[2].text == (
        "In the FAERS extract t1, 12 reports name propranolol with Bradycardia: PRR 3.00 "
        "(95% CI 2.00 to 4.50), ROR 3.40 (95% CI 2.20 to 5.10); the pair meets the screening "
        "rule for a signal."
    )
    assert "confirmed PMID:123" in items[4].text and "hospitalisation" in items[4].text
    assert len(evidence_items("propranolol", SUMMARIES, SIGNALS, [], faers_top_n=1)) == 3


def test_a_version_names_the_evidence_and_the_composer():
    items = evidence_items("propranolol", SUMMARIES, SIGNALS, [CASE], faers_top_n=5)
    same = evidence_items("propranolol", SUMMARIES, SIGNALS, [CASE], faers_top_n=5)
    fewer = evidence_items("propranolol", SUMMARIES, SIGNALS, [], faers_top_n=5)
    assert evidence_version(items, "model:local-qwen") == evidence_version(same, "model:local-qwen")
    assert evidence_version(items, "model:local-qwen") != evidence_version(
        fewer, "model:local-qwen"
    )
    assert evidence_version(items, "model:local-qwen") != evidence_version(items, "template")


def test_cost_per_accepted_summary_prices_every_draft_of_the_window_over_the_accepted():
    calls = pl.DataFrame(
        {
            "workflow": ["draft-periodic-summary", "draft-periodic-summary", "persona-panel"],
            "cost_usd": [0.003, 0.001, 0.5],
        }
    )
    drafts = pl.DataFrame(
        {"draft_id": ["a", "b", "c", "d"], "composer": ["model", "model", "template", "model"]}
    )
    reviews = pl.DataFrame(
        {
            "draft_id": ["a", "b", "c", "z"],
            "status": ["resolved", "resolved", "resolved", "resolved"],
            "outcome": ["accepted", "needs_changes", "accepted", "accepted"],
        }
    )
    row = cost_per_accepted_summary(calls, drafts, reviews).row(0, named=True)
    assert row == {
        "drafts": 4,
        "templates": 1,
        "accepted": 2,
        "needs_changes": 1,
        "rejected": 0,
        "open": 1,
        "model_usd": pytest.approx(0.004),
        "usd_per_accepted_summary": pytest.approx(0.002),
    }
    none_accepted = cost_per_accepted_summary(calls, drafts.head(2).tail(1), reviews)
    assert none_accepted["usd_per_accepted_summary"].to_list() == [None]  # never $0
