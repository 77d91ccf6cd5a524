"""Text normalisation and a cheap language check for case text. Pure and deterministic.

Why: what a human reads and what a regex or a model sees must be the same text. A zero-width
space inside ``d\u200bied`` or inside initials is invisible on screen but makes ``died`` and
``AB`` different strings; ``I.C.U.`` hides ``ICU`` from a word list; full-width letters and
ligatures are the same words to a reader. Every analysis of case text runs on
:func:`normalise_text` (the narrative) or :func:`match_key` (fields compared for duplicates).

The language check answers one question: is this narrative plain English prose, the only text
the narrative analysis supports? It is a share of common English function words per sentence
and over the whole text, with no foreign function words, no non-Latin letters, no implausibly
long words and no run-on sentences. Anything doubtful is "not supported", which only ever means
"a human reads it": it can hold a report, never accept one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n]+")
_AROUND_NEWLINE = re.compile(r" *\n[\s]*")
# a run of single letters joined by dots (I.C.U, e.g, A.B) loses its inner dots: I.C.U. -> ICU.
_DOTTED = re.compile(r"(?<![^\W\d_])[^\W\d_](?:\.[^\W\d_])+(?![^\W\d_])")
_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _visible(char: str, previous: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cf":  # zero-width space/joiners, soft hyphen, BOM, bidi controls
        return False
    # a combining mark that NFKC could not compose onto a plain letter is decoration (d̶ied)
    return not (category.startswith("M") and previous.isascii() and previous.isalpha())


def normalise_text(text: str) -> str:
    """The text as a reader sees it: NFKC, no format characters, dotted abbreviations joined,
    runs of spaces collapsed (line breaks kept, one at a time: they separate sentences).
    """
    text = unicodedata.normalize("NFKC", text)
    kept: list[str] = []
    for char in text:
        if _visible(char, kept[-1] if kept else ""):
            kept.append(" " if unicodedata.category(char) == "Cc" and char not in "\n\r" else char)
    text = _LINE_BREAKS.sub("\n", "".join(kept))
    text = _DOTTED.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _SPACES.sub(" ", text)
    return _AROUND_NEWLINE.sub("\n", text).strip()


def match_key(text: str) -> str:
    """A field as compared for duplicates: normalised, casefolded, letters and digits only.

    ``A.B.``, ``a b`` and ``A\u200bB`` are the same initials; ``5-FU`` and ``5 FU`` the same drug.
    """
    folded = normalise_text(text).casefold()
    return "".join(char for char in folded if char.isalnum())


def split_sentences(text: str) -> list[str]:
    """Sentences of a normalised text: every one with a letter or digit, none dropped."""
    parts = (part.strip() for part in _SENTENCE_END.split(text))
    return [part for part in parts if any(char.isalnum() for char in part)]


# --- language ---------------------------------------------------------------------------------

_ENGLISH = """a about above after again against ago all also although am among an and any are around
    as at be because been before being below between both but by can could did didn do does
    doesn doing don down during each either every few for from further had hadn has hasn have
    having he her here hers herself him himself his how however i if in into is isn it its
    itself just last me more most my myself neither next no nor not now of off on once one only
    onto or other our out over own per same she should since so some still such than that the
    their them then there these they this those though through throughout to too towards two
    under until up upon very was wasn we were weren what when where whether which while who
    whom whose why will with within without would yet you your"""
ENGLISH_FUNCTION_WORDS = frozenset(_ENGLISH.split())

# Common function words of the languages reports most often arrive in (German, Spanish, French,
# Italian, Dutch, Portuguese) that are not also English words or clinical abbreviations (no
# "die", "war", "met", "il" as in IL-6, "et al", "im" as in intramuscular, "von"
# Willebrand, "des" the drug, "na" as in sodium, "non-").
_FOREIGN = """der das und ist nicht ein eine einen einer dem den mit sich auf für zu wurde
    wurden nach bei sie er es auch wie oder aber noch nur vom zum zur ihr ihre seine
    el los las del que por con una uno fue más muy tras pero sus como esta este
    le les du une est elle dans pour pas sur aux avec été qui cette après
    di che è sono nel della alla dopo stato stata gli
    het een niet werd voor ook aan bij zijn
    não foi ao pelo pela uma dos"""
FOREIGN_FUNCTION_WORDS = frozenset(_FOREIGN.split())

MIN_ENGLISH_SHARE = 0.15  # of all words: English prose runs at 0.3-0.5
LONG_SENTENCE_WORDS = 5  # a sentence this long needs at least one English function word
MAX_WORD_LETTERS = 45  # longer "words" are not prose (a hidden word inside a letter soup)
# A run-on sentence is not prose the model reads reliably: pooled over a 40-word window, "her
# heart gave out" at the end of a 400-word sentence scored 0.35, below triage.clear_below.
MAX_SENTENCE_WORDS = 80


@dataclass(frozen=True)
class LanguageCheck:
    supported: bool
    reason: str


def _script_problem(words: list[str]) -> str | None:
    for word in words:
        if len(word) > MAX_WORD_LETTERS:
            return "a word longer than any English word"
        foreign = [c for c in word if not c.isascii() and not _latin(c)]
        if foreign and any(c.isascii() for c in word):
            return "letters of two scripts in one word"
    letters = [c for w in words for c in w]
    non_latin = sum(1 for c in letters if not c.isascii() and not _latin(c))
    if non_latin > 0.01 * len(letters):
        return "letters outside the Latin script"
    return None


def _latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN") or char == "\u03bc"  # μ as in μg


def _foreign(word: str) -> bool:
    return word in FOREIGN_FUNCTION_WORDS or not word.isascii()


def _sentence_problem(words: list[str]) -> str | None:
    if len(words) > MAX_SENTENCE_WORDS:
        return "a run-on sentence"
    english = sum(1 for w in words if w in ENGLISH_FUNCTION_WORDS)
    foreign = sum(1 for w in words if _foreign(w))
    if len(words) >= LONG_SENTENCE_WORDS and english == 0:
        return "a sentence without English function words"
    if foreign and (len(words) < LONG_SENTENCE_WORDS or foreign >= english):
        return "a sentence with non-English words"
    return None


def check_english(text: str) -> LanguageCheck:
    """Is this normalised narrative plainly English? Deterministic; doubt means no.

    Every sentence is checked (a single sentence in another language is enough to say no), then
    the whole: enough English function words, at most one word in two hundred that is foreign or
    carries a letter outside ASCII (a name like Sjögren passes, a sentence of Spanish does not).
    """
    sentences = [_WORD.findall(s.casefold()) for s in split_sentences(text)]
    words = [w for sentence in sentences for w in sentence]
    if not words:
        return LanguageCheck(False, "no words")
    problem = _script_problem(words)
    for sentence in sentences:
        problem = problem or (_sentence_problem(sentence) if sentence else None)
    if problem:
        return LanguageCheck(False, problem)
    english = sum(1 for w in words if w in ENGLISH_FUNCTION_WORDS)
    foreign = sum(1 for w in words if _foreign(w))
    if english < MIN_ENGLISH_SHARE * len(words):
        return LanguageCheck(False, "too few English function words")
    if foreign > max(1, len(words) // 200):
        return LanguageCheck(False, "too many non-English words")
    return LanguageCheck(True, "English")
