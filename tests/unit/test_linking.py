"""Possible follow-ups: same patient descriptors, drug and overlapping reactions. Pure."""

from __future__ import annotations

import pytest

from tasks.intake import IcsrCase
from tasks.tools.linking import find_follow_up, same_patient


def case(case_id: str, **fields) -> IcsrCase:
    body = {
        "case_id": case_id,
        "received_at": "2026-03-02T09:00:00+00:00",
        "patient": {"initials": "AB", "age_years": 54, "sex": "F"},
        "suspect_drugs": ["Xanomeline"],
        "reactions": [{"term": "Blistering rash"}],
    }
    return IcsrCase.model_validate(body | fields)


def no_cosine(_mine, _theirs) -> float:
    return 0.0


@pytest.mark.parametrize(
    ("patient", "same"),
    [
        ({"age_years": 54.5, "sex": "F"}, True),
        ({"age_years": 55, "sex": "F"}, False),
        ({"initials": "A.B."}, True),
        ({"age_years": 30, "sex": "F"}, False),
        ({"initials": "AB", "sex": "M"}, False),
        ({}, False),  # nothing known in both: no link
    ],
)
def test_patient_descriptors_known_in_both_must_agree(patient, same):
    assert same_patient(case("N", patient=patient), case("O")) is same


def test_word_overlap_links_a_reworded_report_of_the_same_drug():
    new = case(
        "N", suspect_drugs=["xanomeline 50 mg tablets"], reactions=[{"term": "Rash, blistering"}]
    )
    found = find_follow_up(new, [case("O")], window_days=30, term_cosine=no_cosine)
    assert found is not None and found.case_id == "O"


@pytest.mark.parametrize(
    "fields",
    [
        {"suspect_drugs": ["Placebo"]},
        {"reactions": [{"term": "Headache"}]},
        {"received_at": "2026-05-02T09:00:00+00:00"},  # outside the 30-day window
    ],
)
def test_another_drug_event_or_time_is_not_a_follow_up(fields):
    assert (
        find_follow_up(case("N", **fields), [case("O")], window_days=30, term_cosine=no_cosine)
        is None
    )


def test_the_embedding_links_what_words_miss():
    new = case("N", reactions=[{"term": "Skin eruption with bullae"}])
    assert find_follow_up(new, [case("O")], window_days=30, term_cosine=lambda a, b: 0.85)
    assert not find_follow_up(new, [case("O")], window_days=30, term_cosine=lambda a, b: 0.6)
