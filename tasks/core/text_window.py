"""The text a short-limit embedder reads: title, then first and last sentences that fit.

A model that reads 128 tokens of a 300-token abstract sees the title and the background and
never the conclusion, where an abstract says what the drug did. The head-tail window keeps the
title and takes sentences from both ends, first then last, second then second-to-last, while
they fit the token budget, and joins them in their order. A text that fits whole is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence


def head_tail_window(
    title: str, sentences: Sequence[str], sentence_tokens: Sequence[int], budget: int
) -> str:
    """``title. <first sentences> <last sentences>`` within ``budget`` tokens.

    Args:
        title: kept first, whatever its length (the model truncates what does not fit).
        sentences: the abstract's sentences, in order.
        sentence_tokens: tokens of each sentence (without special tokens), same order.
        budget: tokens left for sentences once the title and special tokens are counted.

    Returns:
        The title and the chosen sentences in their original order; the whole text (title,
        ". ", every sentence) when every sentence fits.
    """
    if len(sentences) != len(sentence_tokens):
        raise ValueError("one token count per sentence")
    if sum(sentence_tokens) <= budget:
        return _joined(title, sentences)
    chosen: set[int] = set()
    left = budget
    for index in _ends_inwards(len(sentences)):
        if sentence_tokens[index] > left:
            break
        chosen.add(index)
        left -= sentence_tokens[index]
    return _joined(title, [s for i, s in enumerate(sentences) if i in chosen])


def _ends_inwards(count: int) -> list[int]:
    """0, n-1, 1, n-2, ...: each index once."""
    order: list[int] = []
    low, high = 0, count - 1
    while low <= high:
        order.append(low)
        if high != low:
            order.append(high)
        low, high = low + 1, high - 1
    return order


def _joined(title: str, sentences: Sequence[str]) -> str:
    return title + ". " + " ".join(sentences)
