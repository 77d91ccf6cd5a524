"""The packaged embedder is shared by the intake server's threads: concurrent calls are safe.

Two threads in one fast tokenizer once broke a narrative reading (ragged ids that could not
become a tensor) and failed the intake worker of a two-process test.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from models.embedder import default_embedder

TEXTS = [
    "short",
    "a somewhat longer sentence about a rash after the second dose",
    " ".join(["word"] * 300),  # truncated at the model's limit
    "Pt was admitted to the ICU for three nights after the infusion.",
]


def test_concurrent_token_counts_and_embeddings_equal_the_sequential_ones():
    embedder = default_embedder()
    counts, vectors = embedder.count_tokens(TEXTS), embedder.embed(TEXTS)
    start = threading.Barrier(8)

    def work(i: int) -> tuple[list[int], np.ndarray]:
        start.wait()
        for _ in range(10):  # encode pads, count_tokens does not: the tokenizer's state flips
            got_counts, got_vectors = embedder.count_tokens(TEXTS), embedder.embed(TEXTS)
        return got_counts, got_vectors

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for got_counts, got_vectors in results:
        assert got_counts == counts
        np.testing.assert_allclose(got_vectors, vectors, atol=1e-5)
