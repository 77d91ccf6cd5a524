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
