"""Threshold by recall, bootstrap interval and WSS: small tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.screening_stats import (
    bootstrap_interval,
    stratified_folds,
    threshold_at_recall,
    wss_at_recall,
)


def test_threshold_keeps_the_target_share_of_positives():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    positives = np.ones(10, dtype=bool)
    low = threshold_at_recall(scores, positives, 0.9)  # one miss allowed
    assert (scores >= low).sum() == 9
    assert threshold_at_recall(scores, positives, 1.0) < 0.1


def test_threshold_needs_positives():
    with pytest.raises(ValueError, match="positives"):
        threshold_at_recall(np.array([0.5]), np.array([False]), 0.95)


def test_folds_spread_positives_evenly():
    labels = np.array([True] * 10 + [False] * 40)
    folds = stratified_folds(labels, 5, seed=1)
    for fold in range(5):
        assert labels[folds == fold].sum() == 2
        assert (folds == fold).sum() == 10


def test_bootstrap_interval_brackets_the_share_and_is_degenerate_when_all_hit():
    hits = np.array([True] * 30 + [False] * 3)
    low, high = bootstrap_interval(hits, reps=2000, seed=3)
    assert low < hits.mean() < high
    assert high - low > 0.1  # 33 items: a wide interval
    assert bootstrap_interval(np.ones(33, dtype=bool), reps=200) == (1.0, 1.0)


def test_wss_of_a_perfect_and_of_a_reversed_ranking():
    labels = np.array([True] * 10 + [False] * 90)
    perfect = np.linspace(1, 0, 100)
    # 10 positives first: 95% recall needs 10 items read: (100 - 10) / 100 - 0.05
    assert wss_at_recall(perfect, labels) == pytest.approx(0.85)
    assert wss_at_recall(-perfect, labels) == pytest.approx(-0.05)


def test_ties_do_not_flatter_wss():
    labels = np.array([True, False, False, False])
    assert wss_at_recall(np.zeros(4), labels, recall=1.0) == pytest.approx(0.0)
