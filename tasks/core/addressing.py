"""Does a passage, or an answer, address the drug and the reaction that were asked?

A question's topic is its drugs (each with the names it goes by: dictionary synonyms and brand
names, the product file's synonyms) and its reactions (MeSH tree numbers of the disease terms
it names, and organ groups for words MeSH has no term for, such as "hepatic"). Retrieval
returns the nearest chunks whatever they are about; only chunks naming an asked drug, and, when
a reaction was asked, a sentence about it, may be composed from. An answer none of whose
sentences is about the reaction is no answer: the corpus has nothing, and the answer says so.
Entities are found by the caller (dictionaries are I/O); this module only compares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Topic:
    """What a question asks about; empty parts ask nothing of a passage."""

    drugs: Mapping[str, frozenset[str]] = field(default_factory=dict)  # drug -> its names
    reaction_trees: frozenset[str] = frozenset()  # MeSH tree numbers (prefixes)
    reaction_words: frozenset[str] = frozenset()  # organ-word prefixes ("hepat", "liver")
    reaction_names: tuple[str, ...] = ()  # as the question says them, for the refusal

    @property
    def asks_reaction(self) -> bool:
        return bool(self.reaction_trees or self.reaction_words)

    @property
    def empty(self) -> bool:
        return not self.drugs and not self.asks_reaction


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'-]*", text.lower())


def names_drug(text: str, names: Iterable[str]) -> bool:
    """``text`` names the drug by one of ``names`` (whole words, case-insensitive)."""
    lowered = f" {' '.join(_words(text))} "
    return any(f" {' '.join(_words(n))} " in lowered for n in names if _words(n))


def names_any_drug(text: str, topic: Topic, products: Sequence[str] = ()) -> bool:
    """The text (or the chunk's product tags) names one of the asked drugs."""
    return any(d in products or names_drug(text, names) for d, names in topic.drugs.items())


def about_reaction(text: str, trees: Iterable[str], topic: Topic) -> bool:
    """``text`` (whose MeSH disease terms have ``trees``) is about an asked reaction.

    A term matches when its tree number lies under an asked one (hepatitis C06.552.380 under
    liver diseases C06.552) or the reverse; an organ word matches as a word prefix.
    """
    if not topic.asks_reaction:
        return True
    for tree in trees:
        broader = tree.count(".") >= 2  # a top-level category ("C23") is about everything
        if any(
            tree.startswith(a) or (broader and a.startswith(tree)) for a in topic.reaction_trees
        ):
            return True
    return any(w.startswith(p) for w in _words(text) for p in topic.reaction_words)


def refusal_text(topic: Topic) -> str:
    """The plain answer when nothing relevant was retrieved."""
    drugs = " or ".join(sorted(topic.drugs))
    reactions = " or ".join(topic.reaction_names)
    if drugs and reactions:
        about = f"{drugs} and {reactions}"
    else:
        about = drugs or reactions or "this question"
    return f"The corpus has nothing about {about}."
