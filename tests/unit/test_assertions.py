"""ConText-style assertions on seriousness words, IME matching and severity inference: pure."""

from __future__ import annotations

import pytest

from models.narrative import LEXICON
from tasks.intake import IcsrCase
from tasks.rules import ImeTerm
from tasks.tools import icsr
from tasks.tools.assertions import affirmed_text, find_mentions, narrative_sentences
from tasks.tools.case_reading import read_case
from tasks.tools.ime import ime_patterns

IME = ime_patterns(
    [
        ImeTerm(id="sjs", term="Stevens-Johnson syndrome", category="skin", synonyms=["SJS"]),
        ImeTerm(id="ten", term="Toxic epidermal necrolysis", category="skin", synonyms=["TEN"]),
        ImeTerm(id="seizure", term="Seizure", category="neuro", synonyms=["seizures"]),
    ]
)


def assertions(text: str) -> dict[str, str]:
    sentences = narrative_sentences(text)
    return {
        sentences[m.sentence][m.start : m.end]: m.assertion for m in find_mentions(text, LEXICON)
    }


@pytest.mark.parametrize(
    ("text", "word", "assertion"),
    [
        ("The patient denies any hospital visits.", "hospital", "negated"),
        ("She was not hospitalised.", "hospitalised", "negated"),
        ("Hospitalisation was not required.", "Hospitalisation", "negated"),
        ("He didn't need to go to hospital.", "hospital", "negated"),
        ("No seizures were reported.", "seizures", "negated"),
        ("History of seizures as a child.", "seizures", "historical"),
        ("Previously hospitalised for asthma.", "hospitalised", "historical"),
        ("Her mother died of a stroke.", "died", "family"),
        ("Family history of stroke.", "stroke", "family"),
        ("Should anaphylaxis occur, use the pen.", "anaphylaxis", "hypothetical"),
        ("The leaflet says it can cause seizures.", "seizures", "hypothetical"),
        ("Possible seizure on day 3.", "seizure", "uncertain"),
    ],
)
def test_a_mention_gets_its_assertion(text, word, assertion):
    assert assertions(text)[word] == assertion


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("She could not leave the hospital for a week.", "hospital"),  # "not" negates leaving
        ("He did not survive.", "did not survive"),  # the negation is the event
        ("The patient could not be revived.", "not be revived"),
        ("No improvement, the patient died.", "died"),  # a comma ends the scope
        ("Not hospitalised but admitted to the ICU the next day.", "ICU"),
        ("My mother was admitted to hospital after the dose.", "admitted"),  # she is the patient
        ("Her baby was born with a birth defect.", "birth defect"),  # a child is not family
        ("Patient's mother reports the patient was admitted.", "admitted"),
        ("He was no longer in the ICU.", "ICU"),  # pseudo-negation
        ("not without hospitalisation", "hospitalisation"),  # double negation: ambiguous
        ("Previously well, she died on day 3.", "died"),
        ("History of asthma; died on day 3.", "died"),
        ("He was admitted to rule out MI.", "admitted"),
        ("It is not known whether she was hospitalised.", "hospitalised"),
    ],
)
def test_ambiguous_or_out_of_scope_mentions_stay_counted(text, word):
    assert assertions(text)[word] in ("affirmed", "uncertain")


def test_the_model_text_loses_only_discounted_mentions():
    text = (
        "Mild nausea.\nShe was not hospitalised.\nHer mother died of a stroke.\nShe was admitted."
    )
    mentions = find_mentions(text, LEXICON)
    assert affirmed_text(text, mentions) == "Mild nausea.\nShe was admitted."


def test_a_reaction_term_or_an_affirmed_narrative_names_a_medically_important_event():
    reading = read_case("Two weeks later she developed SJS.", ["Rash"], IME)
    assert (reading.ime.certain, reading.ime.uncertain) == (("sjs",), ())
    from_term = read_case("", ["Toxic epidermal necrolysis"], IME)
    assert from_term.ime.certain == ("ten",)


def test_an_uncertain_ime_mention_is_uncertain_and_a_negated_one_does_not_count():
    assert read_case("Suspected SJS, under evaluation.", [], IME).ime.uncertain == ("sjs",)
    negated = read_case("No seizures. History of SJS as a child.", [], IME)
    assert (negated.ime.certain, negated.ime.uncertain) == ((), ())
    assert negated.discounted == (
        "ime.seizure:negated",
        "ime.sjs:historical",
        "medically_important:negated",
    )


def test_an_acronym_matches_only_in_capitals():
    assert read_case("She waited ten minutes.", [], IME).ime.certain == ()


def case(**fields) -> IcsrCase:
    body = {
        "case_id": "C-1",
        "received_at": "2026-03-02T09:00:00+00:00",
        "reactions": [{"term": "Rash"}],
    }
    return IcsrCase.model_validate(body | fields)


@pytest.mark.parametrize(
    ("fields", "criteria", "ime", "cues", "expected"),
    [
        ({}, set(), False, {}, (None, False, None)),
        (
            {"reactions": [{"term": "Rash", "severity_grade": 2}]},
            {"death"},
            False,
            {},
            (2, False, "reported"),
        ),
        ({"outcome": {"death": True}}, set(), False, {"mild": 1}, (5, True, "outcome:death")),
        ({}, {"hospitalisation"}, False, {"mild": 1}, (3, True, "narrative:hospitalisation")),
        ({}, set(), True, {}, (3, True, "medically_important_event")),
        ({}, set(), False, {"mild": 1, "severe": 3}, (3, True, "narrative:severe")),
        ({}, set(), False, {"resolved_untreated": 1}, (1, True, "narrative:resolved_untreated")),
    ],
)
def test_severity_is_reported_else_inferred_else_unknown(fields, criteria, ime, cues, expected):
    found = icsr.infer_severity(
        case(**fields), narrative_criteria=criteria, medically_important=ime, cues=cues
    )
    assert (found.grade, found.inferred, found.basis) == expected


def test_a_medically_important_event_makes_serious_and_an_uncertain_one_keeps_it_open():
    established = icsr.SeriousnessFinding(False, [], "established")
    certain = icsr.with_medically_important(established, certain=True, uncertain=False)
    assert (certain.serious, certain.possible) == (True, ["medically_important"])
    maybe = icsr.with_medically_important(established, certain=False, uncertain=True)
    assert (maybe.serious, maybe.possible, maybe.basis) == (
        None,
        ["medically_important"],
        "medically_important_uncertain",
    )


def test_a_run_on_sentence_is_not_read_for_assertions_so_its_mentions_count():
    run_on = "the tablets were taken " * 25 + "and she was not hospitalised"
    assert assertions(run_on)["hospitalised"] == "affirmed"
    assert assertions("She was not hospitalised.")["hospitalised"] == "negated"
