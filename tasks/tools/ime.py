"""Medically important events (ICH E2A) from a term list: matched on the structured reaction
terms and on the narrative, with assertion handling. Pure; the terms come from
``configs/ime_terms.yaml`` (tasks.rules.load_ime_terms).

A term named by a structured reaction, or affirmed in the narrative, makes the case serious
("medically important"). A term the narrative names only with an uncertain cue ("possible
SJS", "suspected anaphylaxis") holds the case as not ruled out, on the 15-day clock.
Negated, historical, family and hypothetical mentions do not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tasks.rules import ImeTerm
from tasks.tools.assertions import Mention, sentence_mentions

_SEPARATOR = re.compile(r"[\s\-]+")


def _phrase(text: str) -> str:
    words = [re.escape(w) for w in _SEPARATOR.split(text.strip()) if w]
    body = r"[\s\-]+".join(words)
    if text.isupper() and len(text) <= 6:  # an acronym: SJS, TEN, DRESS only in capitals
        return rf"(?-i:{body})"
    return body


def ime_patterns(terms: Iterable[ImeTerm]) -> dict[str, re.Pattern[str]]:
    """One pattern per term id: the term or any synonym, as a whole phrase."""
    patterns = {}
    for term in terms:
        phrases = sorted({_phrase(t) for t in [term.term, *term.synonyms]}, key=len, reverse=True)
        patterns[term.id] = re.compile(
            rf"(?<![\w-])(?:{'|'.join(phrases)})(?![\w-])", re.IGNORECASE
        )
    return patterns


@dataclass(frozen=True)
class ImeFinding:
    """Term ids found: ``certain`` (a reaction term, or affirmed in the narrative) and
    ``uncertain`` (only an uncertain narrative mention); ``mentions`` for the reason record."""

    certain: tuple[str, ...]
    uncertain: tuple[str, ...]
    mentions: tuple[Mention, ...]


def _longest(mentions: Sequence[Mention]) -> list[Mention]:
    """Mentions not inside a longer one ("anaphylactic shock" is not also "shock")."""
    return [
        m
        for m in mentions
        if not any(
            o.sentence == m.sentence
            and o.start <= m.start
            and m.end <= o.end
            and (o.end - o.start) > (m.end - m.start)
            for o in mentions
        )
    ]


def find_ime(
    reaction_terms: Sequence[str],
    narrative: Sequence[Mention],
    patterns: Mapping[str, re.Pattern[str]],
) -> ImeFinding:
    """The medically important events a case names.

    A structured reaction term counts unless it carries an uncertain cue ("suspected SJS": held,
    uncertain); a negation inside a reaction term is read as uncertain too (a reaction field
    says a reaction happened). Narrative mentions count when affirmed, hold when uncertain.

    Args:
        reaction_terms: the structured reaction terms, normalised.
        narrative: the narrative's mentions of ``patterns`` keys (with their assertion).
        patterns: from :func:`ime_patterns`.
    """
    certain: set[str] = set()
    uncertain: set[str] = set()
    for term in reaction_terms:
        for mention in _longest(sentence_mentions(term, -1, patterns)):
            (certain if mention.assertion == "affirmed" else uncertain).add(mention.key)
    mentions = _longest([m for m in narrative if m.key in patterns])
    for mention in mentions:
        if mention.assertion == "affirmed":
            certain.add(mention.key)
        elif mention.assertion == "uncertain":
            uncertain.add(mention.key)
    return ImeFinding(tuple(sorted(certain)), tuple(sorted(uncertain - certain)), tuple(mentions))
