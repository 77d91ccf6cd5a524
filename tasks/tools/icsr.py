"""Deterministic ICSR tools: minimum criteria, ICH E2A seriousness, severity, regulatory clock,
duplicate fingerprints. Pure: the case in, facts out; the clock and the time zone are passed in.

These answer before any model runs, and no text in the narrative can change them: a model may
only *add* a reason for human review, never remove a structured seriousness criterion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from tasks.intake import IcsrCase, Outcome
from tasks.tools.text import match_key

# ICH E2A criteria, in the order a report lists them.
SERIOUSNESS_CRITERIA: tuple[str, ...] = (
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "medically_important",
)

EXPEDITED_FATAL_DAYS = 7
EXPEDITED_SERIOUS_DAYS = 15
NON_SERIOUS_DAYS = 90


def missing_minimum_criteria(case: IcsrCase) -> list[str]:
    """ICH E2D minimum criteria a valid ICSR needs; the names of the ones that are missing.

    An identifiable patient (any of initials, age, sex), an identifiable reporter, at least one
    suspect drug and at least one reaction. An empty list means the case is valid.
    """
    missing: list[str] = []
    patient = case.patient
    if not (patient.initials or patient.age_years is not None or patient.sex in ("F", "M")):
        missing.append("patient")
    if case.reporter is None:
        missing.append("reporter")
    if not any(d.strip() for d in case.suspect_drugs):
        missing.append("suspect_drugs")
    if not any(r.term.strip() for r in case.reactions):
        missing.append("reactions")
    return missing


def seriousness(outcome: Outcome) -> list[str]:
    """The ICH E2A seriousness criteria met by the structured outcome flags, in E2A order."""
    return [name for name in SERIOUSNESS_CRITERIA if getattr(outcome, name) is True]


# What the narrative analysis made of a narrative. Only a whole reading in English ("clear",
# "flagged", "uncertain") can rule a criterion out; "empty" leaves the explicit flags standing.
NarrativeReading = Literal[
    "clear", "empty", "flagged", "uncertain", "unsupported_language", "too_long", "not_read"
]


@dataclass(frozen=True)
class SeriousnessFinding:
    """What the structured fields and the narrative together establish about seriousness.

    Attributes:
        serious: True when a structured criterion is met, False only when every criterion is
            positively ruled out, None otherwise (unknown, which is treated as serious).
        possible: criteria met or not ruled out, in E2A order: the clock assumes them.
        basis: ``criterion_met``, ``established``, ``no_information`` (no narrative and some
            flag not given) or the narrative reading that left a criterion open.
    """

    serious: bool | None
    possible: list[str]
    basis: str


def establish_seriousness(
    outcome: Outcome, *, reading: NarrativeReading, cleared: Iterable[str]
) -> SeriousnessFinding:
    """Seriousness with the burden of proof on non-seriousness.

    A criterion is ruled out only by an explicit ``false`` that no narrative contradicts (the
    narrative is empty) or by a narrative reading that cleared it (read whole, in English, far
    from every seriousness exemplar). A flag left out is unknown, never "no".

    Args:
        outcome: the structured flags (None: not given).
        reading: what the narrative analysis concluded about the whole narrative.
        cleared: criteria the narrative analysis positively ruled out.
    """
    read_whole = reading in ("clear", "flagged", "uncertain")
    ruled_out = set(cleared) if read_whole else set()

    def left_open(name: str) -> bool:
        flag = getattr(outcome, name)
        if flag is True:
            return True
        if name in ruled_out:
            return False
        return flag is None or reading != "empty"  # a narrative may contradict a "false"

    possible = [name for name in SERIOUSNESS_CRITERIA if left_open(name)]
    if seriousness(outcome):
        return SeriousnessFinding(True, possible, "criterion_met")
    if not possible:
        return SeriousnessFinding(False, [], "established")
    return SeriousnessFinding(None, possible, "no_information" if reading == "empty" else reading)


def with_medically_important(
    finding: SeriousnessFinding, *, certain: bool, uncertain: bool
) -> SeriousnessFinding:
    """``finding`` once the medically important events a case names are counted.

    A certain event (a structured reaction term, or affirmed in the narrative) makes the case
    serious; an uncertain one ("suspected SJS") keeps the criterion open, so the case is held
    on the serious clock until a human decides.
    """
    if not (certain or uncertain):
        return finding
    opened = set(finding.possible) | {"medically_important"}
    possible = [name for name in SERIOUSNESS_CRITERIA if name in opened]
    if certain:
        basis = finding.basis if finding.serious else "medically_important"
        return SeriousnessFinding(True, possible, basis)
    if finding.serious:
        return SeriousnessFinding(True, possible, finding.basis)
    basis = "medically_important_uncertain" if finding.basis == "established" else finding.basis
    return SeriousnessFinding(None, possible, basis)


# The grade a seriousness criterion implies at least (CTCAE: 5 death, 4 life-threatening,
# 3 severe or medically significant, hospitalisation indicated).
CRITERION_GRADE: dict[str, int] = {
    "death": 5,
    "life_threatening": 4,
    "hospitalisation": 3,
    "disability": 3,
    "congenital_anomaly": 3,
    "medically_important": 3,
}


@dataclass(frozen=True)
class SeverityFinding:
    """The grade the policy sees. ``basis``: ``reported``, ``outcome:<criterion>``,
    ``narrative:<criterion or cue>``, ``medically_important_event``; None when unknown."""

    grade: int | None
    inferred: bool
    basis: str | None


def infer_severity(
    case: IcsrCase,
    *,
    narrative_criteria: Iterable[str],
    medically_important: bool,
    cues: Mapping[str, int],
) -> SeverityFinding:
    """The reported grade, else the highest grade the facts imply, else unknown.

    Inferred from structured seriousness flags, seriousness words the narrative affirms, a
    medically important event, and the reporter's severity cues ("mild", "resolved without
    treatment" 1; "moderate" 2; "severe" 3). The highest wins, so a "mild" never hides a
    "severe" or a hospitalisation. Nothing to infer from: unknown (the policy fails safe).

    Args:
        narrative_criteria: criteria a narrative word names (affirmed or uncertain).
        medically_important: a medically important event is named (certain or uncertain).
        cues: severity cue name -> the grade it implies, for cues that count.
    """
    reported = severity(case)
    if reported is not None:
        return SeverityFinding(reported, False, "reported")
    candidates = [(CRITERION_GRADE[name], f"outcome:{name}") for name in seriousness(case.outcome)]
    candidates += [(CRITERION_GRADE[name], f"narrative:{name}") for name in narrative_criteria]
    if medically_important:
        candidates.append((3, "medically_important_event"))
    candidates += [(grade, f"narrative:{name}") for name, grade in cues.items()]
    if not candidates:
        return SeverityFinding(None, False, None)
    grade, basis = max(candidates, key=lambda c: (c[0], c[1]))
    return SeverityFinding(grade, True, basis)


def severity(case: IcsrCase) -> int | None:
    """The highest reaction grade, or None when no reaction carries one (unknown, not mild)."""
    grades = [r.severity_grade for r in case.reactions if r.severity_grade is not None]
    return max(grades) if grades else None


@dataclass(frozen=True)
class Clock:
    days: int
    day_zero: date
    due: date
    rule: str


def regulatory_clock(
    received_at: datetime,
    *,
    site_timezone: str,
    criteria: Iterable[str],
    study_case: bool,
    expected: bool | None,
) -> Clock:
    """The reporting deadline of a case (ICH E2A / EU GVP VI timelines).

    Day 0 is the calendar date of receipt *in the receiving site's time zone* (a report received
    23:30 UTC on a Friday is a Saturday in Tokyo). 7 days for a fatal or life-threatening,
    unexpected clinical-trial case; 15 for any other serious case; 90 for non-serious. An
    unknown expectedness counts as unexpected (fail safe). Timelines are calendar days; a due
    date on a weekend is moved back to the Friday before, so the clock never makes a case late.

    Args:
        received_at: timezone-aware receipt time.
        site_timezone: IANA name, e.g. ``Europe/Amsterdam``.
        criteria: the seriousness criteria met.
        study_case: the case comes from a clinical trial.
        expected: listed in the reference safety information; None when not assessed.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    met = set(criteria)
    day_zero = received_at.astimezone(ZoneInfo(site_timezone)).date()
    if study_case and expected is not True and met & {"death", "life_threatening"}:
        days, rule = EXPEDITED_FATAL_DAYS, "7-day: fatal or life-threatening SUSAR"
    elif met:
        days, rule = EXPEDITED_SERIOUS_DAYS, "15-day: serious"
    else:
        days, rule = NON_SERIOUS_DAYS, "90-day: non-serious"
    due = day_zero + timedelta(days=days)
    while due.weekday() >= 5:  # Saturday 5, Sunday 6
        due -= timedelta(days=1)
    return Clock(days=days, day_zero=day_zero, due=due, rule=rule)


def duplicate_fingerprint(case: IcsrCase) -> str:
    """A key equal for reports of the same patient, drugs and reactions, however spelled.

    Compared on :func:`tasks.tools.text.match_key`: case, width, invisible characters (a
    zero-width space in the initials), punctuation and spacing do not count; drug and reaction
    order does not matter.
    The case id and the narrative are not part of it: a duplicate usually arrives under a new id
    with a reworded story.
    """
    patient = case.patient
    age = "" if patient.age_years is None else str(int(patient.age_years))
    parts = [
        match_key(patient.initials or ""),
        age,
        patient.sex or "",
        "|".join(sorted(k for k in map(match_key, case.suspect_drugs) if k)),
        "|".join(sorted(k for k in (match_key(r.term) for r in case.reactions) if k)),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def find_duplicate(
    case: IcsrCase,
    fingerprint: str,
    recent: Iterable[tuple[str, str, datetime]],
    *,
    window_days: int,
) -> str | None:
    """The earliest earlier case (id) with the same fingerprint received within the window.

    Args:
        recent: (case_id, fingerprint, received_at) of cases already accepted.
    """
    window = timedelta(days=window_days)
    hits = sorted(
        (received, case_id)
        for case_id, other, received in recent
        if other == fingerprint
        and case_id != case.case_id
        and abs(case.received_at - received) <= window
    )
    return hits[0][1] if hits else None
