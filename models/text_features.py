"""Sparse word features of a text by hashing: no vocabulary, so nothing to pickle.

Words and word pairs (lower case, letters and digits) are hashed with CRC-32 into a fixed
number of columns; counts are damped (1 + log) and each row is scaled to unit length. The same
text always gives the same row, on any machine, so the scorer stores only its weights and the
number of columns. TF-IDF beside MiniLM measured better than MiniLM alone on these abstracts
(bench/results/small_model_ceiling.json); hashing keeps that signal without a vocabulary file.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# frequent function words carry no signal and would fill the hashed columns
STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "with",
        "which",
        "we",
        "our",
        "these",
        "those",
        "than",
        "then",
        "there",
        "their",
        "been",
        "also",
        "not",
        "but",
        "into",
    }
)


def _terms(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def hashed_counts(texts: Sequence[str], n_features: int) -> csr_matrix:
    """One unit-length row per text over ``n_features`` hashed word and word-pair columns."""
    indptr, indices, values = [0], [], []
    for text in texts:
        counts: Counter[int] = Counter(
            zlib.crc32(term.encode()) % n_features for term in _terms(text)
        )
        columns = sorted(counts)
        weights = np.array([1.0 + np.log(counts[c]) for c in columns])
        norm = float(np.sqrt((weights**2).sum())) or 1.0
        indices.extend(columns)
        values.extend((weights / norm).tolist())
        indptr.append(len(indices))
    return csr_matrix(
        (np.array(values, dtype=np.float64), np.array(indices, dtype=np.int64), np.array(indptr)),
        shape=(len(texts), n_features),
    )
