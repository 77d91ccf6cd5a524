import numpy as np
import pytest

from tasks.core.ladder import choose_cascade, compare_paths

#                 pos   pos   pos   pos   neg   neg   neg   neg   neg   neg
PROBS = np.array([0.10, 0.30, 0.50, 0.90, 0.05, 0.20, 0.35, 0.40, 0.60, 0.95])
LABELS = np.array([True, True, True, True, False, False, False, False, False, False])
SCOPE = np.ones(10, dtype=bool)


def test_the_cheapest_low_threshold_that_keeps_the_target_recall_is_chosen():
    choice = choose_cascade(
        PROBS,
        LABELS,
        SCOPE,
        high=0.8,
        target_recall=0.75,
        small_usd_per_item=0.001,
        large_usd_per_item=1.0,
    )
    # 3 of 4 positives kept: low = 0.30; escalated: 0.30 0.50 0.35 0.40 0.60 -> 5 of 10
    assert choice.low == pytest.approx(0.30)
    assert choice.small_recall_at_low == pytest.approx(0.75)
    assert choice.escalated_share == pytest.approx(0.5)
    assert choice.expected_usd_per_1k_items == pytest.approx(1000 * (0.001 + 0.5 * 1.0))
    assert choice.all_large_usd_per_1k_items == pytest.approx(1000.0)


def test_a_weaker_large_model_forces_a_lower_threshold():
    strict = choose_cascade(
        PROBS,
        LABELS,
        SCOPE,
        high=0.8,
        target_recall=0.75,
        small_usd_per_item=0.001,
        large_usd_per_item=1.0,
        large_recall=0.9,
    )
    # recall = (1 caught by high + 0.9 * escalated positives) / 4 >= 0.75 needs all 3 below high
    assert strict.low == pytest.approx(0.10)


def test_an_unreachable_target_is_an_error():
    with pytest.raises(ValueError, match="no threshold reaches recall"):
        choose_cascade(
            PROBS,
            LABELS,
            SCOPE,
            high=0.8,
            target_recall=0.99,
            small_usd_per_item=0.0,
            large_usd_per_item=1.0,
            large_recall=0.5,
        )


def test_paths_are_compared_on_the_same_items_and_prices():
    large = np.array([True, True, False, True, False, False, True, False, False, False])
    paths = compare_paths(
        PROBS,
        LABELS,
        large,
        low=0.30,
        high=0.8,
        small_usd=np.full(10, 0.01),
        large_usd=np.full(10, 1.0),
    )
    assert paths["all_small"]["true_positives"] == 3 and paths["all_small"]["flagged"] == 7
    assert paths["all_large"]["recall"] == 0.75 and paths["all_large"]["cost_usd"] == 10.0
    cascade = paths["cascade"]
    # flagged: 0.90 and 0.95 by the small model, 0.30 and 0.35 by the large one
    assert cascade["flagged"] == 4 and cascade["true_positives"] == 2
    assert cascade["escalated"] == 5
    assert cascade["cost_usd"] == pytest.approx(0.1 + 5.0)
    assert cascade["usd_per_positive_found"] == pytest.approx(5.1 / 2)


def test_a_large_model_may_close_items_only_when_measured_at_target_for_this_prompt():
    from tasks.core.ladder import recall_validated

    record = {"model": "m", "prompt_sha256": "p1", "positives": 25, "recall": 0.96}
    ok = {"model": "m", "prompt_sha256": "p1", "target_recall": 0.95, "min_positives": 20}
    assert recall_validated(record, **ok)
    assert not recall_validated(None, **ok)
    assert not recall_validated({**record, "recall": 0.94}, **ok)
    assert not recall_validated({**record, "recall": float("nan")}, **ok)
    assert not recall_validated({**record, "positives": 19}, **ok)
    assert not recall_validated({**record, "prompt_sha256": "p0"}, **ok)  # another prompt
    assert not recall_validated({**record, "model": "other"}, **ok)
