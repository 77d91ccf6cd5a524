"""Evidence cues of an abstract: each one fires on its own words, and only there."""

from __future__ import annotations

import pytest

from tasks.io.entities import reaction_spans
from tasks.tools.evidence import FEATURE_NAMES, evidence, study_codes

WARFARIN = ["warfarin", "coumadin"]


def _codes(title: str, abstract: str, variants=WARFARIN, types=()) -> list[str]:
    return evidence(title, abstract, variants, reaction_spans, types).codes()


def test_product_and_reaction_in_one_sentence_with_a_causal_cue():
    codes = _codes(
        "Warfarin-induced skin necrosis",
        "A 54-year-old woman developed hemorrhage after starting Coumadin. She recovered.",
    )
    assert {"product+reaction", "product+reaction+causal", "causal:induced", "causal:after"} <= set(
        codes
    )
    assert "case-report" in codes
    assert "reaction:discounted" not in codes


def test_product_and_reaction_in_different_sentences_do_not_pair():
    codes = _codes(
        "Anticoagulation in the elderly",
        "Patients received warfarin for twelve months. Hemorrhage was recorded at follow-up.",
    )
    assert "product+reaction" not in codes
    assert "product+reaction+causal" not in codes


def test_a_negated_reaction_is_discounted_not_affirmed():
    codes = _codes("Dosing study", "No hemorrhage occurred with warfarin in this cohort.")
    assert "reaction:discounted" in codes
    assert "product+reaction" not in codes


def test_without_a_watched_product_only_study_cues_fire():
    codes = _codes("A randomized placebo-controlled trial", "Rats developed hepatitis.", [])
    assert codes == ["study:trial", "study:animal"]


def test_publication_type_wins_over_the_words_of_the_text():
    assert study_codes("a randomized review", ["Case Reports"]) == {"case-report"}
    assert study_codes("we report a case", ["Journal Article"]) == {"case-report"}


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_vector_marks_exactly_the_fired_codes(name):
    found = evidence("Warfarin toxicity", "", WARFARIN, reaction_spans)
    vector = dict(zip(FEATURE_NAMES, found.vector(), strict=True))
    assert (vector[name] == 1.0) == (name in found.codes())


def test_fired_cues_reach_the_reason_and_the_audit_codes_without_case_text():
    import polars as pl

    from tasks.core.audit_entries import decision_entries
    from tasks.policy.planner import Thresholds, plan, with_evidence_reason

    frame = pl.DataFrame(
        {
            "item_id": ["1", "2"],
            "content_hash": ["h1", "h2"],
            "products": [["warfarin"], ["warfarin"]],
            "route": ["warm", "warm"],
            "probability": [0.5, 0.01],
            "evidence": [["product+reaction", "causal:induced"], []],
        }
    )
    decided = with_evidence_reason(plan(frame, Thresholds(0.1, 0.9))).with_columns(
        pl.lit("scan").alias("workflow"),
        pl.lit("r").alias("run_id"),
        pl.lit("c").alias("chunk_id"),
        pl.lit("m").alias("model"),
        pl.lit(0.0).alias("cost_usd"),
    )
    assert decided["reason"][0].endswith("; evidence: product+reaction, causal:induced")
    assert "evidence" not in decided["reason"][1]
    codes = [e["reason_codes"] for e in decision_entries(decided)]
    assert codes == [
        ["PLAN_ESCALATE_ESCALATED", "EVIDENCE:product+reaction", "EVIDENCE:causal:induced"],
        ["PLAN_SMALL_CLOSED_NEGATIVE"],
    ]
