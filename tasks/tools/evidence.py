"""Evidence of an adverse drug event in an abstract, from deterministic rules: cheap, explainable.

Why: the small model sees one embedding of the whole text; a reader screening for adverse events
looks for a few things instead, and so does this module:

* a watched product and a reaction term (the MeSH disease dictionary) in the *same sentence*;
* a causal cue in that sentence ("induced", "associated with", "after", "following",
  "toxicity", "adverse", "due to" ...);
* whether the reaction there is negated or hypothetical (``tasks.tools.assertions``: ConText);
* case-report markers ("a 54-year-old", "we report", "case of");
* the study type: the publication type when the record carries it, else words of the text
  (trial, review, animal or in-vitro study).

Each feature that fires has a short code (``product+reaction``, ``causal:induced``,
``case-report`` ...) that goes into the decision's reason: a cue name, never case text.
Pure: the reaction finder is passed in (``tasks.io.entities.reaction_spans`` in production).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.tools.assertions import narrative_sentences, sentence_mentions

# tokens of a sentence -> (first, last) token index of every reaction term found (inclusive)
ReactionFinder = Callable[[list[str]], list[tuple[int, int]]]

_TOKEN = re.compile(r"[\w'-]+")


def _cue(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-])(?:{pattern})(?![\w])", re.IGNORECASE)


CAUSAL_CUES: dict[str, re.Pattern[str]] = {
    "induced": re.compile(r"\w-induced\b|(?<![\w-])induced(?![\w])", re.IGNORECASE),
    "associated": _cue(r"associated with|association (?:with|between)"),
    "after": _cue(r"after|following|subsequent to"),
    "toxicity": _cue(r"toxicity|toxic|poisoning|overdose|intoxication"),
    "adverse": _cue(r"adverse|side[- ]effects?|complications?|reactions?"),
    "caused": _cue(r"caused by|due to|attributed to|attributable to|secondary to|related to"),
}
CASE_REPORT = re.compile(
    r"(?<![\w-])(?:an? \d{1,3}[- ](?:year|month|week|day)s?[- ]old|we (?:report|describe|present)"
    r"|case reports?|a case of|this case|(?:a|one) patient)(?![\w])",
    re.IGNORECASE,
)
STUDY_TEXT: dict[str, re.Pattern[str]] = {
    "trial": _cue(r"randomi[sz]ed|placebo|double[- ]blind|clinical trial|phase (?:i|ii|iii|1|2|3)"),
    "review": _cue(r"review|meta-analysis|systematic"),
    "animal": _cue(r"rats?|mice|mouse|rabbits?|dogs?|in vitro|cultured cells"),
}
STUDY_PUBLICATION_TYPES: dict[str, str] = {
    "case reports": "case-report",
    "randomized controlled trial": "trial",
    "clinical trial": "trial",
    "controlled clinical trial": "trial",
    "review": "review",
    "systematic review": "review",
    "meta-analysis": "review",
}
MAX_SENTENCE_CHARS = 2_000  # a run-on "sentence" is not read for co-occurrence

FEATURE_NAMES: tuple[str, ...] = (
    "product+reaction",
    "product+reaction+causal",
    "product+causal",
    "reaction:affirmed",
    "reaction:discounted",
    *(f"causal:{name}" for name in CAUSAL_CUES),
    "case-report",
    "study:trial",
    "study:review",
    "study:animal",
)


@dataclass(frozen=True)
class Evidence:
    """The cues that fired for one item, by their codes (a subset of ``FEATURE_NAMES``)."""

    fired: frozenset[str]

    def vector(self) -> list[float]:
        """1.0 for each fired feature, in ``FEATURE_NAMES`` order: the scorer's input."""
        return [1.0 if name in self.fired else 0.0 for name in FEATURE_NAMES]

    def codes(self) -> list[str]:
        """The fired codes in ``FEATURE_NAMES`` order: what the decision's reason shows."""
        return [name for name in FEATURE_NAMES if name in self.fired]


@functools.lru_cache(maxsize=1024)
def _product_pattern(variants: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern per set of product names, compiled once: a scan meets the same few sets
    (one per watched product, or two) thousands of times, and compiling is most of the cost."""
    kept = sorted({v.strip() for v in variants if len(v.strip()) >= 4}, key=len, reverse=True)
    if not kept:
        return None
    alternatives = "|".join(re.escape(v) for v in kept)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w])", re.IGNORECASE)


def _reaction_assertions(sentence: str, find_reactions: ReactionFinder) -> list[str]:
    """The ConText assertion of each reaction term found in ``sentence``."""
    tokens = _TOKEN.findall(sentence)
    spans = find_reactions(tokens)
    if not spans:
        return []
    terms = {" ".join(tokens[a : b + 1]) for a, b in spans}
    patterns = {
        "reaction": re.compile(
            "|".join(rf"(?<![\w-]){re.escape(t)}(?![\w])" for t in sorted(terms, key=len)[::-1]),
            re.IGNORECASE,
        )
    }
    mentions = sentence_mentions(sentence, 0, patterns)
    return [m.assertion for m in mentions] or ["affirmed"]


def _sentence_cues(sentence: str, find_reactions: ReactionFinder) -> set[str]:
    """Codes fired by one sentence that names a watched product."""
    causal = {f"causal:{name}" for name, cue in CAUSAL_CUES.items() if cue.search(sentence)}
    fired = set(causal) | ({"product+causal"} if causal else set())
    assertions = _reaction_assertions(sentence, find_reactions)
    affirmed = [a for a in assertions if a in ("affirmed", "uncertain")]
    if affirmed:
        fired |= {"product+reaction", "reaction:affirmed"}
        if causal:
            fired.add("product+reaction+causal")
    if len(affirmed) < len(assertions):
        fired.add("reaction:discounted")
    return fired


def study_codes(text: str, publication_types: Sequence[str] = ()) -> set[str]:
    """Case-report and study-type codes: the publication type when known, else the text's words."""
    from_types = {
        STUDY_PUBLICATION_TYPES[t.strip().lower()]
        for t in publication_types
        if t.strip().lower() in STUDY_PUBLICATION_TYPES
    }
    if from_types:
        return {c if c == "case-report" else f"study:{c}" for c in from_types}
    fired = {f"study:{name}" for name, cue in STUDY_TEXT.items() if cue.search(text)}
    if CASE_REPORT.search(text):
        fired.add("case-report")
    return fired


def evidence(
    title: str,
    abstract: str,
    product_variants: Sequence[str],
    find_reactions: ReactionFinder,
    publication_types: Sequence[str] = (),
) -> Evidence:
    """The evidence cues of one item.

    Args:
        title: the citation's title ("" when missing).
        abstract: its abstract ("" when missing).
        product_variants: every name of the watched products the item mentions (none: no
            product cue can fire, only case-report and study cues).
        find_reactions: tokens -> token spans of reaction terms (MeSH diseases).
        publication_types: MEDLINE publication types, when the record carries them.
    """
    text = f"{title}. {abstract}" if abstract else title
    fired = study_codes(text, publication_types)
    product = _product_pattern(tuple(product_variants))
    if product is None:
        return Evidence(frozenset(fired))
    for sentence in narrative_sentences(text):
        if len(sentence) <= MAX_SENTENCE_CHARS and product.search(sentence):
            fired |= _sentence_cues(sentence, find_reactions)
    return Evidence(frozenset(fired))
