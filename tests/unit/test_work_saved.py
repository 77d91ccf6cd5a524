"""WSS@95 (tasks.core.screening_stats.wss_at_recall) on tiny rankings counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.core.screening_stats import wss_at_recall


def wss_at(scores: list[float], relevant: list[bool], recall: float = 0.95) -> float:
    return wss_at_recall(np.asarray(scores, float), np.asarray(relevant, bool), recall)


def test_a_perfect_ranking_saves_all_but_the_relevant_share():
    # 2 relevant of 10, ranked first: 95% of 2 is 2 -> screen 2 of 10
    scores = [0.9, 0.8] + [0.1] * 8
    relevant = [True, True] + [False] * 8
    assert wss_at(scores, relevant) == pytest.approx(0.8 - 0.05)


def test_a_relevant_item_ranked_last_means_screening_everything():
    scores = [0.9, 0.8, 0.7, 0.1]
    relevant = [True, False, False, True]
    assert wss_at(scores, relevant) == pytest.approx(0.0 - 0.05)


def test_ties_count_against_the_model_and_no_relevant_item_gives_nan():
    assert wss_at([0.5] * 4, [False, True, False, False]) == pytest.approx(-0.05)
    assert math.isnan(wss_at([0.5, 0.4], [False, False]))


def test_the_recall_target_decides_how_far_down_one_screens():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    relevant = [True, False, True, False, True]
    assert wss_at(scores, relevant, recall=0.6) == pytest.approx((5 - 3) / 5 - 0.4)
