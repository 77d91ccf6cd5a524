"""Honest statistics for a screening threshold when positives are few. Pure: seeds passed in.

In-scope positives are few (12 on the calibration split, 33 on the test split): a threshold
chosen on 12 positives is a coin toss, and a recall measured on 33 has a wide interval. So:

* ``stratified_folds`` and ``threshold_at_recall`` choose the threshold on out-of-fold scores of
  train + calibration together (cross-validation), never on the split that is measured;
* ``bootstrap_interval`` gives the 95% percentile interval of a recall measured on few items;
* ``wss_at_recall`` is work saved over sampling (Cohen et al., 2006): the share of items a
  reader need not look at, ranked by the score, to reach a recall, minus what random order saves.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def stratified_folds(labels: Bools, k: int, seed: int) -> npt.NDArray[np.int64]:
    """Fold number (0..k-1) of each item, positives and negatives spread evenly over folds."""
    rng = np.random.default_rng(seed)
    folds = np.empty(labels.size, dtype=np.int64)
    for value in (True, False):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        folds[members] = np.arange(members.size) % k
    return folds


def threshold_at_recall(scores: Floats, positives: Bools, target: float) -> float:
    """The highest threshold that keeps at least ``target`` of the positives at or above it.

    Misses allowed: ``floor((1 - target) * positives)``; the threshold sits just below the
    score of the first positive that must be kept.

    Raises:
        ValueError: no positive to choose on.
    """
    kept_scores = np.sort(scores[positives])
    if kept_scores.size == 0:
        raise ValueError("a threshold at a recall needs positives")
    misses = math.floor((1 - target) * kept_scores.size + 1e-9)
    return float(np.nextafter(kept_scores[misses], -np.inf))


def bootstrap_interval(
    hits: Bools, *, reps: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the share of ``hits`` (e.g. recall over positives)."""
    if hits.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, hits.size, size=(reps, hits.size))
    shares = hits[draws].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(shares, tail)), float(np.quantile(shares, 1 - tail))


def wss_at_recall(scores: Floats, labels: Bools, recall: float = 0.95) -> float:
    """Work saved over sampling at ``recall``: ``(N - screened) / N - (1 - recall)``.

    ``screened`` is how many items, read in order of descending score, hold
    ``ceil(recall * positives)`` positives. Ties are broken against the ranking (positives
    last), so the figure is never flattered by ties.
    """
    n, positives = labels.size, int(labels.sum())
    if n == 0 or positives == 0:
        return math.nan
    order = np.lexsort((labels, -scores))  # by score descending; on ties, negatives first
    needed = math.ceil(recall * positives - 1e-9)
    screened = int(np.searchsorted(np.cumsum(labels[order]), needed) + 1)
    return (n - screened) / n - (1 - recall)
