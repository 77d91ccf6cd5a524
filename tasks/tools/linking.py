"""Possible follow-ups: a new report about the same patient, drug and event as a recent one,
worded differently. Pure; the reaction-term similarity (MiniLM) is passed in.

The exact duplicate fingerprint (``icsr.duplicate_fingerprint``) misses a follow-up that
says "skin rash with blisters" where the first said "blistering rash", adds a dose to the drug
name or leaves the initials out. Here two reports are linked when

* both name a common suspect drug (a shared drug-name word of four letters or more, dose and
  form words aside);
* no patient descriptor known in both differs (age in whole years, sex, initials) and at
  least one is known in both and equal;
* their reactions overlap: word overlap (Jaccard of the words that name an event, 0.6) or the
  best reaction-term cosine (0.8; "application site erythema" and "... pruritus" are 0.61,
  "blistering rash" and "skin rash with blisters" 0.91);
* they were received within the duplicate window.

A link only sends the case to a human ("possible follow-up of <case>"); it never clears one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from tasks.intake import IcsrCase
from tasks.tools.text import match_key, normalise_text

WORD_OVERLAP = 0.6
TERM_COSINE = 0.8
# Words that place or qualify a reaction rather than name it: "application site erythema" and
# "application site pruritus" are two events.
_NOT_AN_EVENT = frozenset(
    (
        "application", "site", "injection", "infusion", "administration", "increased",
        "decreased", "abnormal", "disorder", "syndrome", "reaction", "with", "and", "the",
        "left", "right", "acute", "chronic", "first", "degree",
    )
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+")
_NOT_A_DRUG_NAME = frozenset(
    (
        "tablet", "capsule", "oral", "injection", "solution", "cream", "patch", "film",
        "coated", "extended", "release", "daily", "dose",
    )
)  # fmt: skip


def _words(text: str, *, minimum: int) -> set[str]:
    words = (w.casefold() for w in _WORD.findall(normalise_text(text)))
    return {w.removesuffix("s") for w in words if len(w) >= minimum}


def _drug_words(case: IcsrCase) -> set[str]:
    return {w for d in case.suspect_drugs for w in _words(d, minimum=4)} - _NOT_A_DRUG_NAME


def same_patient(new: IcsrCase, old: IcsrCase) -> bool:
    """No descriptor known in both differs, and at least one known in both agrees."""
    a, b = new.patient, old.patient
    agreed = 0
    if a.age_years is not None and b.age_years is not None:
        if int(a.age_years) != int(b.age_years):
            return False
        agreed += 1
    if a.sex in ("F", "M") and b.sex in ("F", "M"):
        if a.sex != b.sex:
            return False
        agreed += 1
    if a.initials and b.initials and match_key(a.initials) and match_key(b.initials):
        if match_key(a.initials) != match_key(b.initials):
            return False
        agreed += 1
    return agreed > 0


def reaction_overlap(new: IcsrCase, old: IcsrCase) -> float:
    """Jaccard of the reaction words (three letters or more, plural s folded)."""
    mine = {w for r in new.reactions for w in _words(r.term, minimum=3)} - _NOT_AN_EVENT
    theirs = {w for r in old.reactions for w in _words(r.term, minimum=3)} - _NOT_AN_EVENT
    if not mine or not theirs:
        return 0.0
    return len(mine & theirs) / len(mine | theirs)


def candidates(new: IcsrCase, recent: Sequence[IcsrCase], *, window_days: int) -> list[IcsrCase]:
    """Recent cases with a common drug and a compatible patient inside the window."""
    window = timedelta(days=window_days)
    drugs = _drug_words(new)
    return [
        old
        for old in recent
        if old.case_id != new.case_id
        and abs(new.received_at - old.received_at) <= window
        and drugs & _drug_words(old)
        and same_patient(new, old)
    ]


@dataclass(frozen=True)
class FollowUp:
    case_id: str
    score: float


def find_follow_up(
    new: IcsrCase,
    recent: Sequence[IcsrCase],
    *,
    window_days: int,
    term_cosine: Callable[[Sequence[str], Sequence[str]], float],
) -> FollowUp | None:
    """The most similar recent case this one may follow up, or None.

    Args:
        recent: the same submitter's recent cases (never another submitter's).
        term_cosine: best cosine between two lists of reaction terms (the packaged MiniLM).
    """
    best: FollowUp | None = None
    for old in candidates(new, recent, window_days=window_days):
        words = reaction_overlap(new, old)
        score = words
        if words < WORD_OVERLAP:
            mine = [r.term for r in new.reactions]
            theirs = [r.term for r in old.reactions]
            score = max(words, term_cosine(mine, theirs) if mine and theirs else 0.0)
            if score < TERM_COSINE:
                continue
        if best is None or score > best.score:
            best = FollowUp(old.case_id, round(score, 4))
    return best
