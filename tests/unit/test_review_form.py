"""The review form's description carries what a reviewer judges from (tasks/core/review_form)."""

from __future__ import annotations

from datetime import date

from tasks.core.review_form import EXCERPT_CHARS, form_description
from tasks.schemas import InboxItem


def _item(kind: str, evidence: dict) -> InboxItem:
    return InboxItem(
        item_id=f"{kind}:C-9",
        kind=kind,
        source_id="C-9",
        source="urgent-ae-triage" if kind == "triage" else "escalation-lane",
        reason="held_for_review" if kind == "triage" else "case_candidate",
        day_zero=date(2026, 11, 30),
        clock_days=7,
        due_date=date(2026, 12, 7),
        priority=1,
        evidence=evidence,
    )


def test_a_triage_form_shows_drug_reaction_patient_narrative_clock_and_reasons():
    item = _item(
        "triage",
        {
            "reference": {"case_id": "C-9"},
            "case": {
                "suspect_drugs": ["metformin"],
                "reactions": [{"term": "lactic acidosis", "severity_grade": 4}],
                "patient": {"initials": "JD", "age_years": 71.0, "sex": "F"},
                "reporter": {"qualification": "physician", "country": "NL"},
                "outcome": {"hospitalisation": True, "death": None},
            },
            "decision": {"valid": True, "missing": [], "seriousness": ["hospitalisation"]},
            "narrative_excerpt": "Admitted to ICU. " * 200,
            "reason_codes": ["SERIOUS_CASE_NEEDS_HUMAN"],
        },
    )
    text = form_description(item, ["accepted", "rejected"], "REVIEW_CODE_USED: used before")
    assert text.startswith("**Refused: REVIEW_CODE_USED: used before.**")
    for shown in ("metformin", "lactic acidosis", "initials JD, age_years 71.0, sex F",
                  "physician", "hospitalisation", "**Day 0:** 2026-11-30", "**Clock:** 7 days",
                  "**Due:** 2026-12-07", "priority 1", "Admitted to ICU.",
                  "SERIOUS_CASE_NEEDS_HUMAN", "accepted or rejected"):  # fmt: skip
        assert shown in text, shown
    excerpt = text.split("**Narrative excerpt:** ")[1].split("\n")[0]
    assert len(excerpt) <= EXCERPT_CHARS + len(" [...]")


def test_a_literature_form_shows_abstract_products_and_each_verdict_with_its_rationale():
    item = _item(
        "literature",
        {
            "reference": {"item_id": "123", "pub_date": "2026-01-05"},
            "title": "Rhabdomyolysis on atorvastatin",
            "abstract": "A 60-year-old man developed rhabdomyolysis.",
            "products": ["atorvastatin"],
            "verdicts": [
                {
                    "workflow": "nightly-literature-scan",
                    "path": "small",
                    "model": "minilm",
                    "probability": 0.4123,
                    "decision": "escalated",
                    "reason": "uncertain",
                },
                {
                    "workflow": "escalation-lane",
                    "path": "large",
                    "model": "qwen",
                    "probability": None,
                    "decision": "case_candidate",
                    "reason": "drug, event",
                },
            ],
            "case": None,
            "reason_codes": ["PLAN_LARGE_CASE_CANDIDATE"],
        },
    )
    text = form_description(item, ["confirmed_icsr", "not_icsr"])
    assert text.startswith("### Review literature:C-9")
    for shown in ("PMID 123", "atorvastatin", "Rhabdomyolysis on atorvastatin",
                  "developed rhabdomyolysis", "p=0.412", "**escalated**: uncertain",
                  "**case_candidate**: drug, event", "PLAN_LARGE_CASE_CANDIDATE",
                  "pharmalane review code literature:C-9"):  # fmt: skip
        assert shown in text, shown
