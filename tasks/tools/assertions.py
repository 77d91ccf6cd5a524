"""Assertion status of a mention in a narrative (ConText-style): affirmed, negated, historical,
family, hypothetical or uncertain. Pure and deterministic.

Why: "denies hospital visits", "history of seizures", "her mother died of a stroke" and "if a
rash occurs, stop" name a seriousness word that does not describe this patient's event now.
Counting them held plainly non-serious reports for a human. Discounting them must never lose a
real event, so every rule here errs towards *affirmed*:

* A trigger modifies a mention only across a short gap made of light words (articles,
  auxiliaries, "any", "to", "history", pronouns...): "could not *leave* the hospital" keeps the
  hospital affirmed, "did not go to the hospital" negates it. Punctuation (a comma, a colon, a
  dash, brackets) and conjunctions ("and", "or", "but", "then", "which"...) end every scope.
* Pseudo-triggers are not triggers: "no longer", "not only", "no further", "not ruled out",
  "did not survive", "never woke up", "could not be revived"...
* Two negations of one mention ("not without") are ambiguous: affirmed. An uncertain cue
  ("possible", "suspected", "?") is never a discount: an uncertain mention counts.
* Family means an ancestor or sibling of the patient ("her mother", "the patient's father",
  "family history of"): never "my mother" (in a consumer report she is often the patient) and
  never a child ("her baby was born with a defect" is the mother's congenital-anomaly case).
* A death is never "historical" (a patient has no history of dying), and dates alone ("in
  2019") do not make a mention historical: a late report of an old event is still reportable.

medspaCy's ConText would need spaCy and its tokenizer stack in the pinned environment, for
rules that are about this long; the rules here follow ConText's categories, directions,
pseudo-triggers and terminators (Harkema et al., 2009), with a stricter gap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Assertion = Literal["affirmed", "negated", "historical", "family", "hypothetical", "uncertain"]
Direction = Literal["forward", "backward", "both"]
DISCOUNTED: frozenset[str] = frozenset({"negated", "historical", "family", "hypothetical"})


@dataclass(frozen=True)
class Trigger:
    pattern: re.Pattern[str]
    category: Assertion
    direction: Direction
    max_gap_words: int


def _t(
    pattern: str, category: Assertion, direction: Direction = "forward", gap: int = 5
) -> Trigger:
    return Trigger(
        re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])", re.IGNORECASE), category, direction, gap
    )


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOT = r"not|never|no|n[o']t|without|neither|nor|\w+n['\u2019]t"
_RELATIVE = (
    r"mother|father|parents?|brother|sister|siblings?|grand(?:mother|father|parents?)|aunt|uncle"
    r"|cousin"
)
_POSSESSOR = r"his|her|their|the patient['\u2019]s|patient['\u2019]s"
TRIGGERS: tuple[Trigger, ...] = (
    _t(_NOT, "negated"),
    _t(
        r"denie[sd]|deny|denying|negative for|free of|absence of|no (?:evidence|signs?) of",
        "negated",
    ),
    _t(
        r"(?:was|were|is|are|been)? ?(?:not (?:required|needed|necessary|warranted|indicated)"
        r"|unnecessary|avoided|ruled out|excluded)",
        "negated",
        "backward",
        3,
    ),
    _t(r"ruled out|excluded", "negated"),
    _t(
        r"(?:past )?(?:medical )?history of|(?:past )?medical history|PMH|hx of|h/o|previous(?:ly)?"
        r"|prior|in the past|as a child|childhood",
        "historical",
    ),
    _t(
        rf"family history(?: of)?|FHx?|(?:{_POSSESSOR}) (?:{_RELATIVE})",
        "family",
    ),
    _t(
        r"if|in case(?: of)?|in the event(?: of)?|should|unless|risk of|at risk (?:of|for)"
        r"|(?:to )?(?:rule out|r/o|prevent|avoid)|prevention of|prophyla\w*"
        r"|warn(?:ed|ing|s)?(?: (?:about|of|that))?"
        r"|(?:may|might|can|could|would) (?:cause|lead to|result in|trigger)"
        r"|side effects? (?:include|including|such as|like|are|were)|(?:package )?leaflet",
        "hypothetical",
        gap=6,
    ),
    _t(
        r"possible|possibly|suspected|suspicion of|probable|probably|likely|consistent with"
        r"|concern(?:ed)? (?:for|about)|questionable|query|cannot be (?:excluded|ruled out)|whether"
        r"|unclear|unknown|not known|not (?:sure|certain|clear)"
        r"|could not (?:be )?(?:excluded|ruled out|rule out)|not (?:been )?ruled out|differential",
        "uncertain",
        "both",
    ),
)

# Phrases that contain a trigger word but do not negate, date or hypothesise the mention.
PSEUDO = re.compile(
    r"(?<![\w-])(?:no longer|not only|not just|no further|no more|not until|no one|nobody|no sooner"
    r"|not (?:certain|sure|clear)|unclear|not (?:been )?ruled out|cannot be (?:excluded|ruled out)"
    r"|could not (?:be )?(?:excluded|ruled out|rule out)|not excluded|not (?:yet )?discharged"
    r"|(?:did|does|could|would) ?n[o']t (?:survive|recover|wake|regain|respond|breathe)"
    r"|not (?:be )?(?:revived|resuscitated|saved|woken)"
    r"|not (?:responsive|responding|breathing|conscious)"
    r"|never (?:woke|recovered|regained|came round|came to)|no (?:pulse|heartbeat|signs of life)"
    r"|without (?:a )?(?:pulse|heartbeat)|prior to|previously well"
    r"|suspect (?:drugs?|medicines?|product)"
    r"|gram[- ]negative|if any|not necessarily)(?![\w-])",
    re.IGNORECASE,
)

# Words a trigger may reach across; any other word (a content verb such as "leave", "found")
# ends the scope. Mentions of the same kind inside the gap also pass ("not admitted to hospital").
LIGHT_WORDS = _word_set(
    """
    a an the any some his her their its my our your this that these those to of for in into at
    on with be been being was were is are am have has had having do does did done need needs
    needed require requires required go goes went gone going taken take takes took get gets got
    getting end ends ended up visit visits visited visiting stay stayed staying further other
    another more much ever again yet also even really actually history prior previous
    previously known he she they i you we it him them me experience experiences experienced
    develop develops developed occur occurs occurred suffer suffers suffered no not never
    without nor neither signs sign symptoms symptom evidence episode episodes kind sort type
    form attack attacks treatment treated admission admissions overnight serious major
    significant severe
    """
)
_TERMINATOR = re.compile(
    r"[,:;()\[\]\u2013\u2014]| - |(?<![\w-])(?:and|or|but|however|although|though|yet|except|apart"
    r"|aside|then|which|who|whose|after|afterwards|until|when|whereas|while|because|since|so"
    r"|later|subsequently|now|currently|eventually|instead|despite|as well)(?![\w-])",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[\w'\u2019/]+")
# A run-on sentence is not read for assertions: every mention in it stays affirmed (the
# language check refuses such a sentence anyway), which also bounds the work on 20,000
# characters of "no hospital no hospital ...". A gap longer than this is never crossed.
MAX_SENTENCE_WORDS = 80
MAX_GAP_CHARS = 200
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True)
class Mention:
    """One lexicon or term match in one sentence, with what ConText made of it.

    Attributes:
        key: what the pattern names (a seriousness criterion, an IME term id, a severity cue).
        sentence: index of the sentence in the narrative.
        start, end: character offsets inside that sentence.
        assertion: affirmed unless a trigger reached it; see the module docstring.
        scope: offsets of the mention together with the triggers behind its assertion.
    """

    key: str
    sentence: int
    start: int
    end: int
    assertion: Assertion
    scope: tuple[int, int] = (0, 0)  # the mention and the triggers that discounted it

    @property
    def discounted(self) -> bool:
        return self.assertion in DISCOUNTED


def narrative_sentences(text: str) -> list[str]:
    """The sentences of a normalised narrative, as the narrative model splits them."""
    parts = (s.strip() for s in _SENTENCE.split(text))
    return [s for s in parts if any(c.isalnum() for c in s)]


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _gap_allows(gap: str, limit: int) -> bool:
    """A trigger reaches across ``gap`` only if it is short, unpunctuated, of light words."""
    if _TERMINATOR.search(gap):
        return False
    words = [w.casefold() for w in _WORDS.findall(gap)]
    return len(words) <= limit and all(w in LIGHT_WORDS for w in words)


def _reaches(
    trigger: tuple[int, int],
    rule: Trigger,
    target: tuple[int, int],
    text: str,
    same: list[tuple[int, int]],
) -> bool:
    if _overlaps(trigger, target):
        return False
    if trigger[1] <= target[0] and rule.direction in ("forward", "both"):
        start, end = trigger[1], target[0]
    elif target[1] <= trigger[0] and rule.direction in ("backward", "both"):
        start, end = target[1], trigger[0]
    else:
        return False
    if end - start > MAX_GAP_CHARS:
        return False
    gap = list(text[start:end])
    for a, b in same:  # other mentions in the gap pass
        for i in range(max(a, start), min(b, end)):
            gap[i - start] = " "
    return _gap_allows("".join(gap), rule.max_gap_words)


def _triggers(sentence: str) -> list[tuple[tuple[int, int], Trigger]]:
    pseudo = _spans(PSEUDO, sentence)
    found = []
    for rule in TRIGGERS:
        for span in _spans(rule.pattern, sentence):
            if rule.category == "uncertain" or not any(_overlaps(span, p) for p in pseudo):
                found.append((span, rule))
    return found


def _assertion(key: str, categories: list[Assertion]) -> Assertion:
    if not categories or "uncertain" in categories:
        return "uncertain" if categories else "affirmed"
    if categories.count("negated") >= 2:
        return "affirmed"  # "not without", "never did not": ambiguous counts
    for category in ("negated", "hypothetical", "family", "historical"):
        if category in categories and not (category == "historical" and key == "death"):
            return category
    return "affirmed"


def sentence_mentions(
    sentence: str, index: int, patterns: Mapping[str, re.Pattern[str]]
) -> list[Mention]:
    """Every match of ``patterns`` in one sentence, each with its assertion.

    Other matches inside a trigger's gap pass ("her mother *died* of a stroke": the stroke is
    the mother's too).
    """
    triggers = _triggers(sentence) if len(_WORDS.findall(sentence)) <= MAX_SENTENCE_WORDS else []
    found = [(key, span) for key, pattern in patterns.items() for span in _spans(pattern, sentence)]
    mentions = []
    for key, span in found:
        others = [s for _, s in found if s != span]
        reaching = [
            (rule.category, t_span)
            for t_span, rule in triggers
            if _reaches(t_span, rule, span, sentence, others)
        ]
        assertion = _assertion(key, [category for category, _ in reaching])
        edges = [*span, *(i for c, t in reaching if c == assertion for i in t)]
        scope = (min(edges), max(edges))
        mentions.append(Mention(key, index, span[0], span[1], assertion, scope))
    return mentions


def find_mentions(text: str, patterns: Mapping[str, re.Pattern[str]]) -> list[Mention]:
    """Every match of ``patterns`` in a normalised narrative, sentence by sentence."""
    found: list[Mention] = []
    for index, sentence in enumerate(narrative_sentences(text)):
        found.extend(sentence_mentions(sentence, index, patterns))
    return found


def affirmed_keys(mentions: Sequence[Mention], *, uncertain: bool = True) -> set[str]:
    """Keys with a mention that counts (affirmed, and uncertain unless ``uncertain`` is False)."""
    wanted = {"affirmed", "uncertain"} if uncertain else {"affirmed"}
    return {m.key for m in mentions if m.assertion in wanted}


def discounted_codes(mentions: Sequence[Mention]) -> list[str]:
    """``<key>:<assertion>`` for every discounted mention, sorted, once each: the reason record.

    No narrative text: these go into the decision, which is stored in the clear.
    """
    return sorted({f"{m.key}:{m.assertion}" for m in mentions if m.discounted})


_CONTENT_FREE = LIGHT_WORDS | frozenset(["patient", "pt"])


def affirmed_text(text: str, mentions: Sequence[Mention]) -> str:
    """The narrative the similarity model reads: each discounted mention cut out.

    Only a discounted mention and the trigger that discounted it go ("denies any hospital" of
    "The patient denies any hospital visits"); a sentence left with no content word is dropped,
    so its remains cannot look like "the patient died" to the embedder. A cut never removes an
    affirmed or uncertain mention, and every other sentence is kept whole.
    """
    cut: dict[int, list[tuple[int, int]]] = {}
    for m in mentions:
        if m.discounted and not any(
            o.sentence == m.sentence and not o.discounted and _overlaps((o.start, o.end), m.scope)
            for o in mentions
        ):
            cut.setdefault(m.sentence, []).append(m.scope)
    kept = []
    for index, sentence in enumerate(narrative_sentences(text)):
        if index not in cut:
            kept.append(sentence)
            continue
        chars = list(sentence)
        for a, b in cut[index]:
            chars[a:b] = " " * (b - a)
        residue = " ".join("".join(chars).split())
        if any(w.casefold() not in _CONTENT_FREE for w in _WORDS.findall(residue)):
            kept.append(residue)
    return "\n".join(kept)
