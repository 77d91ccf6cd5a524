"""What the rules read in a case before the similarity model does: seriousness words with
their assertion, medically important events, severity cues, and the text the model may see.
Pure and deterministic.

The narrative model (``models/narrative.py``) then reads ``model_text``: the normalised
narrative with every discounted mention cut out. So "not hospitalised" neither fires the
hospitalisation word nor drags a sentence towards "admitted to hospital", while any affirmed or
uncertain mention, and every sentence without a discount, is read exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models.narrative import LEXICON
from tasks.tools.assertions import (
    affirmed_keys,
    affirmed_text,
    discounted_codes,
    find_mentions,
)
from tasks.tools.ime import ImeFinding, find_ime

# Cues of severity in the reporter's words, each with the grade it implies (CTCAE-like). An
# explicit "mild" or a reaction that went away untreated is grade 1; "severe" and its kin 3.
SEVERITY_CUES: Mapping[str, tuple[int, re.Pattern[str]]] = {
    name: (grade, re.compile(pattern, re.IGNORECASE))
    for name, grade, pattern in (
        (
            "severe",
            3,
            r"\b(severe(ly)?|excruciating|unbearable|intolerable|debilitating|incapacitat\w*"
            r"|agoni[sz]\w*|agony|extreme(ly)?|grade [345])\b",
        ),
        ("moderate", 2, r"\b(moderate(ly)?|grade 2)\b"),
        ("mild", 1, r"\b(mild(ly)?|slight(ly)?|minor|minimal|tolerable|bearable|grade 1)\b"),
        (
            "resolved_untreated",
            1,
            r"\b((resolved|went away|subsided|wore off|disappeared|settled)( \w+){0,3}"
            r" (on its own|by itself|without (any )?(treatment|medication|intervention)"
            r"|spontaneously)|resolved spontaneously)\b",
        ),
    )
}
_CUE_PATTERNS = {name: pattern for name, (_, pattern) in SEVERITY_CUES.items()}


@dataclass(frozen=True)
class CaseReading:
    """The rule-based reading of one case.

    Attributes:
        model_text: the narrative the similarity model reads (discounted mentions cut out).
        criteria: seriousness criteria a lexicon word names, affirmed or uncertain.
        ime: medically important events (certain and uncertain term ids).
        severity_cues: severity cue names that count (affirmed or uncertain).
        discounted: ``<key>:<assertion>`` of every mention that did not count.
    """

    model_text: str
    criteria: frozenset[str]
    ime: ImeFinding
    severity_cues: frozenset[str]
    discounted: tuple[str, ...]


def read_case(
    text: str, reaction_terms: Sequence[str], ime_patterns: Mapping[str, re.Pattern[str]]
) -> CaseReading:
    """Read a normalised narrative and the case's normalised reaction terms.

    Args:
        text: ``tasks.tools.text.normalise_text`` of the narrative.
        reaction_terms: the structured reaction terms, normalised the same way.
        ime_patterns: ``tasks.tools.ime.ime_patterns`` of configs/ime_terms.yaml.
    """
    ime_keyed = {f"ime.{key}": pattern for key, pattern in ime_patterns.items()}
    cue_keyed = {f"severity.{key}": pattern for key, pattern in _CUE_PATTERNS.items()}
    mentions = find_mentions(text, {**LEXICON, **ime_keyed, **cue_keyed})
    words = [m for m in mentions if m.key in LEXICON]
    cues = [m for m in mentions if m.key in cue_keyed]
    ime = find_ime(reaction_terms, mentions, ime_keyed)
    ime = ImeFinding(
        tuple(k.removeprefix("ime.") for k in ime.certain),
        tuple(k.removeprefix("ime.") for k in ime.uncertain),
        ime.mentions,
    )
    discounted = discounted_codes(mentions)
    return CaseReading(
        model_text=affirmed_text(text, [*words, *ime.mentions]),
        criteria=frozenset(affirmed_keys(words)),
        ime=ime,
        severity_cues=frozenset(k.removeprefix("severity.") for k in affirmed_keys(cues)),
        discounted=tuple(discounted),
    )
