"""The replay feed is built from the packaged data and every case passes the intake contract."""

from collections import Counter

from tasks.intake import IcsrCase
from tasks.io.ae_feed import cdisc_cases, drugscom_cases, replay_feed
from tasks.tools import icsr


def test_cdisc_cases_carry_the_trial_seriousness_and_reject_partial_dates_by_name():
    cases, rejected = cdisc_cases()
    parsed = [IcsrCase.model_validate(c) for c in cases]
    assert len(parsed) + len(rejected) == 961  # every AE row is a case or a named rejection
    assert all(field == "AESTDTC" and "not a full date" in why for _, field, why in rejected)
    assert all(not icsr.missing_minimum_criteria(c) for c in parsed)
    fatal = [c for c in parsed if "death" in icsr.seriousness(c.outcome)]
    assert fatal and all(c.study_case for c in fatal)
    assert Counter(icsr.severity(c) for c in parsed).keys() <= {1, 2, 3}


def test_drugscom_cases_are_consumer_reports_without_a_patient_or_reaction():
    cases, rejected = drugscom_cases()
    assert (len(cases), rejected) == (979, [])
    first = IcsrCase.model_validate(cases[0])
    assert icsr.missing_minimum_criteria(first) == ["patient", "reactions"]
    assert "&#039;" not in "".join(c["narrative"] for c in cases)


def test_replay_feed_interleaves_both_sources_with_unique_ids():
    feed, _ = replay_feed()
    ids = [c["case_id"] for c in feed]
    assert len(ids) == len(set(ids))
    assert {ids[0].split("-")[0], ids[1].split("-")[0]} == {"CDISC", "DRUGSCOM"}
