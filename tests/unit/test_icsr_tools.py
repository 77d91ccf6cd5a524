from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tasks.intake import IcsrCase, Outcome
from tasks.tools import icsr

RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def case(**fields) -> IcsrCase:
    base = {
        "case_id": "C-1",
        "received_at": RECEIVED,
        "reporter": {"qualification": "physician", "country": "NL"},
        "patient": {"initials": "AB", "age_years": 54, "sex": "F"},
        "suspect_drugs": ["Xanomeline"],
        "reactions": [{"term": "Rash", "severity_grade": 1}],
    }
    return IcsrCase.model_validate(base | fields)


@pytest.mark.parametrize("criterion", icsr.SERIOUSNESS_CRITERIA)
def test_every_seriousness_criterion_is_recognised_alone(criterion):
    assert icsr.seriousness(Outcome(**{criterion: True})) == [criterion]


def test_no_flag_no_seriousness_and_all_flags_in_e2a_order():
    assert icsr.seriousness(Outcome()) == []
    every = Outcome(**dict.fromkeys(icsr.SERIOUSNESS_CRITERIA, True))
    assert icsr.seriousness(every) == list(icsr.SERIOUSNESS_CRITERIA)


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({}, []),
        ({"patient": {}}, ["patient"]),
        ({"patient": {"sex": "U"}}, ["patient"]),  # unknown sex alone identifies no one
        ({"patient": {"age_years": 0}}, []),  # a newborn is identifiable by age 0
        ({"reporter": None}, ["reporter"]),
        ({"suspect_drugs": [" "]}, ["suspect_drugs"]),
        ({"reactions": []}, ["reactions"]),
        (
            {"patient": {}, "reporter": None, "suspect_drugs": [], "reactions": []},
            ["patient", "reporter", "suspect_drugs", "reactions"],
        ),
    ],
)
def test_minimum_criteria(fields, missing):
    assert icsr.missing_minimum_criteria(case(**fields)) == missing


def test_severity_is_the_highest_grade_and_unknown_when_ungraded():
    graded = case(
        reactions=[{"term": "a", "severity_grade": 2}, {"term": "b", "severity_grade": 4}]
    )
    assert icsr.severity(graded) == 4
    assert icsr.severity(case(reactions=[{"term": "a"}])) is None


def clock(received, criteria=(), study=False, expected=None, tz="Europe/Amsterdam"):
    return icsr.regulatory_clock(
        received, site_timezone=tz, criteria=criteria, study_case=study, expected=expected
    )


def test_clock_days_by_seriousness_and_expectedness():
    assert clock(RECEIVED).days == 90
    assert clock(RECEIVED, ["hospitalisation"]).days == 15
    assert clock(RECEIVED, ["death"], study=True).days == 7  # unknown expectedness: unexpected
    assert clock(RECEIVED, ["life_threatening"], study=True, expected=False).days == 7
    assert clock(RECEIVED, ["death"], study=True, expected=True).days == 15  # expected: 15
    assert clock(RECEIVED, ["death"], study=False).days == 15  # post-marketing fatal: 15


def test_clock_due_date_is_calendar_days_from_day_zero():
    result = clock(RECEIVED, ["hospitalisation"])  # Monday 2 March + 15 = Tuesday 17 March
    assert (result.day_zero, result.due) == (date(2026, 3, 2), date(2026, 3, 17))


def test_clock_due_on_a_weekend_moves_back_to_friday():
    # Tuesday 3 March + 7 = Tuesday; Thursday 5 March + 7 = Thursday; Monday 2 Mar + 90 = Sun 31 May
    sunday_due = clock(RECEIVED)
    assert date(2026, 3, 2) + timedelta(days=90) == date(2026, 5, 31)
    assert sunday_due.due == date(2026, 5, 29)
    saturday_due = clock(datetime(2026, 3, 7, 12, tzinfo=UTC), ["death"], study=True)
    assert saturday_due.due == date(2026, 3, 13)  # Sat 7 + 7 = Sat 14 -> Fri 13


def test_clock_day_zero_is_the_date_at_the_receiving_site():
    late_friday_utc = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)
    assert clock(late_friday_utc, tz="UTC").day_zero == date(2026, 3, 6)
    assert clock(late_friday_utc, tz="Asia/Tokyo").day_zero == date(2026, 3, 7)
    new_york = datetime(2026, 3, 6, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert clock(new_york, tz="Europe/Amsterdam").day_zero == date(2026, 3, 7)
    tokyo = clock(late_friday_utc, ["hospitalisation"], tz="Asia/Tokyo")
    assert tokyo.due == date(2026, 3, 20)  # Sat 7 + 15 = Sun 22 -> Fri 20


def test_naive_receipt_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        clock(datetime(2026, 3, 2, 9))
    with pytest.raises(ValidationError, match="received_at"):
        case(received_at="2026-03-02T09:00:00")


def test_duplicate_fingerprint_ignores_spelling_order_and_narrative():
    first = case(suspect_drugs=["Xanomeline", "Aspirin"], narrative="one story")
    again = case(
        case_id="C-2",
        suspect_drugs=["  aspirin", "XANOMELINE "],
        reactions=[{"term": "rash"}],
        narrative="another story",
    )
    other_patient = case(case_id="C-3", patient={"initials": "AB", "age_years": 61, "sex": "F"})
    assert icsr.duplicate_fingerprint(first) == icsr.duplicate_fingerprint(again)
    assert icsr.duplicate_fingerprint(first) != icsr.duplicate_fingerprint(other_patient)


def test_find_duplicate_inside_the_window_only_and_earliest_first():
    new = case(case_id="NEW")
    fp = icsr.duplicate_fingerprint(new)
    recent = [
        ("OLD-2", fp, RECEIVED - timedelta(days=3)),
        ("OLD-1", fp, RECEIVED - timedelta(days=10)),
        ("FAR", fp, RECEIVED - timedelta(days=45)),
        ("OTHER", "x" * 32, RECEIVED),
        ("NEW", fp, RECEIVED),
    ]
    assert icsr.find_duplicate(new, fp, recent, window_days=30) == "OLD-1"
    assert icsr.find_duplicate(new, fp, recent, window_days=5) == "OLD-2"
    assert icsr.find_duplicate(new, fp, recent[3:], window_days=30) is None


def test_a_flag_left_out_is_unknown_not_false():
    assert Outcome().death is None
    assert Outcome(death=False).death is False
    assert icsr.seriousness(Outcome(death=False, hospitalisation=None)) == []


EVERY_FALSE = dict.fromkeys(icsr.SERIOUSNESS_CRITERIA, False)
ALL = list(icsr.SERIOUSNESS_CRITERIA)


@pytest.mark.parametrize(
    ("flags", "reading", "cleared", "serious", "possible", "basis"),
    [
        # the narrative, read whole in English, rules every criterion out: established
        ({}, "clear", ALL, False, [], "established"),
        (EVERY_FALSE, "clear", ALL, False, [], "established"),
        # explicit "no" on every flag and nothing to contradict it: established
        (EVERY_FALSE, "empty", ALL, False, [], "established"),
        # no narrative and flags left out: unknown, every left-out flag stays open
        ({}, "empty", ALL, None, ALL, "no_information"),
        ({**EVERY_FALSE, "death": None}, "empty", ALL, None, ["death"], "no_information"),
        # a narrative that could not be read whole, or in English, clears nothing, and may
        # contradict an explicit "false"
        (EVERY_FALSE, "unsupported_language", ALL, None, ALL, "unsupported_language"),
        ({}, "too_long", (), None, ALL, "too_long"),
        (EVERY_FALSE, "not_read", (), None, ALL, "not_read"),
        # read whole but close to an example: only what it cleared is ruled out
        (EVERY_FALSE, "uncertain", ALL[1:], None, ["death"], "uncertain"),
        ({}, "flagged", ALL[2:], None, ["death", "life_threatening"], "flagged"),
        # a structured criterion is met: serious, plus whatever the narrative left open
        ({"hospitalisation": True}, "clear", ALL, True, ["hospitalisation"], "criterion_met"),
        ({"hospitalisation": True}, "empty", ALL, True, ALL, "criterion_met"),
    ],
)
def test_non_seriousness_must_be_established(flags, reading, cleared, serious, possible, basis):
    finding = icsr.establish_seriousness(Outcome(**flags), reading=reading, cleared=cleared)
    assert (finding.serious, finding.possible, finding.basis) == (serious, possible, basis)


def test_the_clock_of_an_unestablished_case_is_the_shortest_it_might_need():
    unknown = icsr.establish_seriousness(Outcome(), reading="uncertain", cleared=())
    assert clock(RECEIVED, unknown.possible).days == 15
    assert clock(RECEIVED, unknown.possible, study=True).days == 7  # death not ruled out
    assert clock(RECEIVED, unknown.possible, study=True, expected=True).days == 15
    no_death = icsr.establish_seriousness(
        Outcome(), reading="uncertain", cleared=["death", "life_threatening"]
    )
    assert clock(RECEIVED, no_death.possible, study=True).days == 15


@pytest.mark.parametrize(
    "initials", ["A\u200bB", "A\u200cB", "\ufeffAB", "A.B.", "ａｂ", "A\u00adB"]
)
def test_invisible_characters_in_the_initials_do_not_hide_a_duplicate(initials):
    plain = case()
    hidden = case(case_id="C-2", patient={"initials": initials, "age_years": 54, "sex": "F"})
    assert icsr.duplicate_fingerprint(hidden) == icsr.duplicate_fingerprint(plain)


def test_invisible_characters_in_drug_and_reaction_do_not_hide_a_duplicate():
    plain = case()
    hidden = case(
        case_id="C-2",
        suspect_drugs=["Xano\u200bmeline", "\u200b"],
        reactions=[{"term": "R\u2060ash"}],
    )
    assert icsr.duplicate_fingerprint(hidden) == icsr.duplicate_fingerprint(plain)
