"""Grounding check: is every sentence of a composed text supported by the evidence it cites?

Generic over *evidence items with ids and text* (retrieved chunks for ``ask``, summary rows,
FAERS statistics and review cases for a drafted report section). A model writes sentences
ending in citations such as ``[2]`` or ``[1, 3]``; ``parse_cited`` reads them robustly (citations
before or after the full stop, ranges, repeated brackets), ``check_grounding`` decides per
sentence, deterministically:

1. the sentence cites at least one id (``NO_CITATION``);
2. every cited id is an evidence item that was actually given (``UNKNOWN_CITATION``: a chunk
   that was not retrieved, or an invented number);
3. lexical support: the share of the sentence's content words (numbers exactly) found in the
   cited items is at least ``bounds.min_lexical`` (``LOW_LEXICAL_SUPPORT``);
4. embedding support: the best cosine between the sentence and a sentence of a cited item is at
   least ``bounds.min_embedding`` (``LOW_EMBEDDING_SUPPORT``).

A sentence failing any rule is never shown as fact: ``render`` removes it (or marks it
``[unsupported]``). The grounded share is the fraction of sentences that pass; only a fully
grounded text may be cached. The embedder is passed in (a function of texts), so the check
stays pure and testable with the real packaged model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tasks.core.passages import split_sentences

NO_CITATION = "NO_CITATION"
UNKNOWN_CITATION = "UNKNOWN_CITATION"
LOW_LEXICAL = "LOW_LEXICAL_SUPPORT"
LOW_EMBEDDING = "LOW_EMBEDDING_SUPPORT"
UNSUPPORTED_MARK = "[unsupported]"

# "[1]", "[1, 3]", "[2-4]", "[chunk 2]", "[pmid:123]": one bracket group, possibly repeated.
# A marker holds labels only (numbers, ranges, "chunk 2", "pmid:9"): brackets of the passages'
# own text ("[3H]thymidine", "cis-[PtCl2(NH3)2]") are words of the sentence, not citations.
_ONE_LABEL = (
    r"(?:(?:chunk|source|passage|evidence|item|doc)\s*#?\s*)?"
    r"(?:\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?|[a-z]+:[\w./-]{1,40})"
)
_LABEL_LIST = rf"{_ONE_LABEL}(?:\s*[,;]\s*{_ONE_LABEL})*"
_MARKER = re.compile(rf"\[({_LABEL_LIST})\]", re.I)
_MARKERS_AFTER_STOP = re.compile(rf"([.!?])((?:\s*\[{_LABEL_LIST}\])+)", re.I)
_RANGE = re.compile(r"^(\d+)\s*[-\u2013]\s*(\d+)$")
_LABEL_WORDS = re.compile(r"^(?:chunk|source|passage|evidence|item|doc)\b\s*#?\s*", re.I)
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|\d+(?:\.\d+)?")
_STEM = 6  # words this long match on their first six letters (hepatotoxic / hepatotoxicity)
STOPWORDS = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "was",
        "were",
        "are",
        "is",
        "be",
        "been",
        "being",
        "this",
        "that",
        "these",
        "those",
        "from",
        "into",
        "onto",
        "than",
        "then",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "while",
        "also",
        "such",
        "its",
        "their",
        "there",
        "they",
        "them",
        "has",
        "have",
        "had",
        "not",
        "but",
        "nor",
        "can",
        "may",
        "might",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "our",
        "your",
        "his",
        "her",
        "him",
        "she",
        "one",
        "two",
        "per",
        "via",
        "all",
        "any",
        "each",
        "both",
        "more",
        "most",
        "other",
        "some",
        "only",
        "own",
        "same",
        "very",
        "about",
        "after",
        "before",
        "over",
        "under",
        "between",
        "during",
        "against",
        "among",
        "within",
        "without",
        "reported",
        "report",
        "reports",
        "patients",
        "patient",
        "study",
        "studies",
        "case",
        "cases",
        "associated",
        "including",
        "included",
    }
)


@dataclass(frozen=True)
class CitedSentence:
    """One sentence as written, without its markers, and the ids it cites (in order)."""

    text: str
    cited: tuple[str, ...]


@dataclass(frozen=True)
class GroundingBounds:
    """Support a sentence needs from the items it cites (configs: knowledge.grounding)."""

    min_lexical: float = 0.6
    min_embedding: float = 0.45
    # None: off. n: a run of more than n consecutive content words the cited text lacks fails
    # the sentence ("Doxorubicin (DrugBank DB00997, MeSH D059005) is associated with various
    # adverse reactions.": identifiers lift the share to 0.62, the claim is all new words)
    max_unsupported_run: int | None = None


@dataclass(frozen=True)
class SentenceCheck:
    """The verdict on one sentence; ``problem`` is None when it is grounded."""

    text: str
    cited: tuple[str, ...]
    lexical: float
    embedding: float
    problem: str | None

    @property
    def grounded(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Grounding:
    """Every sentence's verdict, in order."""

    sentences: tuple[SentenceCheck, ...]

    @property
    def grounded_share(self) -> float:
        """Fraction of sentences that are grounded (1.0 for an empty text: nothing claimed)."""
        if not self.sentences:
            return 1.0
        return sum(s.grounded for s in self.sentences) / len(self.sentences)

    @property
    def fully_grounded(self) -> bool:
        return all(s.grounded for s in self.sentences)

    @property
    def kept(self) -> tuple[SentenceCheck, ...]:
        return tuple(s for s in self.sentences if s.grounded)

    @property
    def problems(self) -> dict[str, int]:
        """How many sentences failed, per reason code."""
        counts: dict[str, int] = {}
        for s in self.sentences:
            if s.problem:
                counts[s.problem] = counts.get(s.problem, 0) + 1
        return counts

    def cited_ids(self) -> list[str]:
        """Ids cited by grounded sentences, first citation first, each once."""
        return list(dict.fromkeys(c for s in self.kept for c in s.cited))

    def summary(self) -> dict[str, Any]:
        """What an answer or a draft records about its grounding."""
        return {
            "grounded_share": round(self.grounded_share, 4),
            "sentences": len(self.sentences),
            "grounded": len(self.kept),
            "problems": self.problems,
        }


def _labels(marker: str) -> list[str]:
    """'1, 3' -> ['1', '3']; '2-4' -> ['2', '3', '4']; 'chunk 2' -> ['2']; 'pmid:9' as is."""
    out: list[str] = []
    for part in re.split(r"[,;]", marker):
        label = _LABEL_WORDS.sub("", part.strip())
        span = _RANGE.match(label)
        if span and int(span.group(2)) - int(span.group(1)) < 20:
            out += [str(n) for n in range(int(span.group(1)), int(span.group(2)) + 1)]
        elif label:
            out.append(label)
    return out


def parse_cited(text: str) -> list[CitedSentence]:
    """Sentences of a model's answer with the citation labels each one carries.

    Markers written after the full stop ("... hepatitis. [2]") belong to the sentence before
    them; a sentence without a marker cites nothing (and fails the check). A text written
    with leading markers ("[1] A. [3] B.", the layout small models choose) is read as written:
    each marker cites the sentences after it, up to the next marker.
    """
    if _leading_markers(text):
        return _parse_leading(text)
    normalised = _MARKERS_AFTER_STOP.sub(lambda m: f"{m.group(2)}{m.group(1)}", text)
    out = []
    for sentence in split_sentences(normalised):
        cited = [label for m in _MARKER.finditer(sentence) for label in _labels(m.group(1))]
        bare = _bare(sentence)
        if bare.strip(" .!?"):
            out.append(CitedSentence(bare, tuple(dict.fromkeys(cited))))
    return out


def _bare(sentence: str) -> str:
    """A sentence without its markers, whitespace and punctuation spacing normalised."""
    bare = " ".join(_MARKER.sub(" ", sentence).split())
    return re.sub(r"\s+([.!?,;:])", r"\1", bare)


def _leading_markers(text: str) -> bool:
    """The text opens with a marker, ends without one, and every marker opens a sentence."""
    stripped = text.strip()
    markers = list(_MARKER.finditer(stripped))
    if not markers or markers[0].start() != 0 or stripped.rstrip(" .!?").endswith("]"):
        return False
    before = (stripped[: m.start()].rstrip(" \t") for m in markers[1:])
    return all(b.endswith((".", "!", "?", "]", "\n")) for b in before)


def _parse_leading(text: str) -> list[CitedSentence]:
    """ "[1] A. B. [3] C." -> A and B cite 1, C cites 3 (the markers open what they cite)."""
    out = []
    pieces = _MARKER.split(text.strip())  # "", label, text, label, text, ...
    labels: list[str] = []
    for n in range(1, len(pieces), 2):
        labels += _labels(pieces[n])
        body = pieces[n + 1]
        if not body.strip(" .!?\n"):
            continue  # "[1][2] A.": adjacent markers cite together
        for sentence in split_sentences(body):
            bare = _bare(sentence)
            if bare.strip(" .!?"):
                out.append(CitedSentence(bare, tuple(dict.fromkeys(labels))))
        labels = []
    return out


def content_words(text: str) -> list[str]:
    """Lower-case words of three letters or more that are not stopwords, and numbers."""
    return [
        w
        for w in _WORD.findall(text.lower())
        if w[0].isdigit() or (len(w) >= 3 and w not in STOPWORDS)
    ]


def _found(sentence: str, evidence: str) -> list[bool]:
    """For each content word of the sentence: present in ``evidence`` (numbers exactly,
    words of six letters or more by their first six)."""
    present = set(content_words(evidence))
    stems = {w[:_STEM] for w in present if len(w) >= _STEM and not w[0].isdigit()}
    return [
        w in present or (len(w) >= _STEM and not w[0].isdigit() and w[:_STEM] in stems)
        for w in content_words(sentence)
    ]


def lexical_support(sentence: str, evidence: str) -> float:
    """Share of the sentence's content words present in ``evidence`` (numbers exactly)."""
    found = _found(sentence, evidence)
    return sum(found) / len(found) if found else 0.0


def longest_unsupported_run(sentence: str, evidence: str) -> int:
    """The most consecutive content words of the sentence that ``evidence`` lacks."""
    longest = run = 0
    for present in _found(sentence, evidence):
        run = 0 if present else run + 1
        longest = max(longest, run)
    return longest


def _unit(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def check_grounding(
    sentences: Sequence[CitedSentence],
    evidence: Mapping[str, str],
    embed: Callable[[Sequence[str]], Any],
    bounds: GroundingBounds,
) -> Grounding:
    """The verdict on every sentence against the evidence items it cites.

    Args:
        sentences: from ``parse_cited`` (labels already mapped to evidence ids if needed).
        evidence: id -> text of every item the writer was given; nothing else counts.
        embed: texts -> one vector per text (normalised here), e.g. the packaged MiniLM.
        bounds: the lexical and embedding support a sentence must reach.
    """
    cited_texts = {
        i: split_sentences(evidence[i]) or [evidence[i]]
        for s in sentences
        for i in s.cited
        if i in evidence
    }
    pieces = [p for parts in cited_texts.values() for p in parts]
    vectors: dict[str, np.ndarray] = {}
    if sentences and pieces:
        embedded = _unit(embed([s.text for s in sentences] + pieces))
        for row, piece in enumerate(pieces, start=len(sentences)):
            vectors[piece] = embedded[row]
        own = {s.text: embedded[n] for n, s in enumerate(sentences)}
    checks = []
    for s in sentences:
        if not s.cited:
            checks.append(SentenceCheck(s.text, s.cited, 0.0, 0.0, NO_CITATION))
            continue
        if any(i not in evidence for i in s.cited):
            checks.append(SentenceCheck(s.text, s.cited, 0.0, 0.0, UNKNOWN_CITATION))
            continue
        joined = " ".join(evidence[i] for i in s.cited)
        lexical = lexical_support(s.text, joined)
        similar = max(float(own[s.text] @ vectors[p]) for i in s.cited for p in cited_texts[i])
        run_limit = bounds.max_unsupported_run
        problem = None
        if lexical < bounds.min_lexical or (
            run_limit is not None and longest_unsupported_run(s.text, joined) > run_limit
        ):
            problem = LOW_LEXICAL
        elif similar < bounds.min_embedding:
            problem = LOW_EMBEDDING
        checks.append(SentenceCheck(s.text, s.cited, round(lexical, 4), round(similar, 4), problem))
    return Grounding(tuple(checks))


def render(
    grounding: Grounding,
    cite: Callable[[str], str] = lambda i: i,
    *,
    mode: Literal["remove", "mark"] = "remove",
) -> str:
    """The text to show: grounded sentences with their citations; unsupported ones removed
    (or, with ``mode="mark"``, kept behind ``[unsupported]`` so a reviewer sees what failed)."""
    parts = []
    for s in grounding.sentences:
        refs = " ".join(f"[{cite(i)}]" for i in s.cited)
        if s.grounded:
            parts.append(f"{s.text} {refs}".strip())
        elif mode == "mark":
            parts.append(f"{UNSUPPORTED_MARK} {s.text} ({s.problem})")
    return " ".join(parts)


# --- prompting a writer that cites numbered evidence -------------------------------------------

NOTHING_FOUND = "NOT IN PASSAGES"
SYSTEM_PROMPT = "You are a drug-safety assistant. You answer only from the numbered passages."
# No "say you cannot answer" escape: a 1.5B model takes it on every question (measured: 3 of 3
# on-topic questions). Irrelevant or unsupported sentences are removed by the check instead.
# No example sentence either: the model copied "Two patients developed a rash [2]." verbatim.
# Measured on Qwen2.5-Coder-1.5B (docs/knowledge.md): asked for "facts in the passages' words",
# it wrote from memory ("Atropine is known to cause dry mouth ...") or echoed the question
# ("Yes, liver injury is reported with X [1]."); asked to copy sentences, it copies.
ANSWER_INSTRUCTION = (
    "Answer with one or two sentences copied word for word from the passages, choosing "
    "sentences that name the drug asked about. Put the number of the passage after each "
    "sentence in square brackets, such as [1] or [3]."
)


def numbered_messages(
    instruction: str, request: str, items: Sequence[str], *, max_chars: int = 700
) -> list[dict[str, str]]:
    """Chat messages that show ``items`` numbered from 1 (each cut to ``max_chars``), then the
    request, then the instruction (small models follow what they read last).

    The number a writer cites is the item's position plus one; ``labels_to_ids`` maps it back.
    """
    passages = "\n".join(f"[{n}] {cut(t, max_chars)}" for n, t in enumerate(items, 1))
    user = f"Passages:\n{passages}\n\nQuestion: {request}\n\n{instruction}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def cut(text: str, max_chars: int) -> str:
    """``text`` whitespace-normalised and cut to ``max_chars``: what the writer is shown."""
    return " ".join(text.split())[:max_chars]


def labels_to_ids(sentences: Sequence[CitedSentence], ids: Sequence[str]) -> list[CitedSentence]:
    """Citation numbers (1-based positions in ``ids``) replaced by the ids they point to; a
    number out of range or any other label is kept as written, so the check flags it."""
    by_label = {str(n): i for n, i in enumerate(ids, 1)}
    return [
        CitedSentence(s.text, tuple(dict.fromkeys(by_label.get(c, c) for c in s.cited)))
        for s in sentences
    ]


def says_nothing_found(text: str) -> bool:
    """The writer said the evidence does not answer (the instruction's fixed phrase)."""
    return NOTHING_FOUND.lower() in " ".join(text.split()).lower()
