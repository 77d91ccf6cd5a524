"""Small first, large only when needed: choosing the cascade's threshold and comparing paths.

The cascade: every in-scope item is scored by the small model (cheap); ``p < low`` is closed,
``p >= high`` becomes a case candidate, anything between goes to the large model. Recall on
positives is what the small model lets through times what the large model then finds; cost is
the small model on every item plus the large model on the escalated share. Pure: arrays in,
numbers out; prices per item are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CascadeChoice:
    low: float
    high: float
    target_recall: float
    large_recall_assumed: float
    small_recall_at_low: float
    escalated_share: float
    expected_usd_per_1k_items: float
    all_large_usd_per_1k_items: float
    curve: list[dict[str, float]]


def cascade_curve(
    probs: Floats,
    labels: Bools,
    in_scope: Bools,
    *,
    high: float,
    small_usd_per_item: float,
    large_usd_per_item: float,
    large_recall: float = 1.0,
    bounds: Floats | None = None,
) -> list[dict[str, float]]:
    """Recall and expected cost per 1,000 in-scope items for each candidate ``low``.

    Recall is measured on every positive (the small model's job); the escalated share, which
    drives cost, on in-scope items only (out-of-scope items never reach a model).
    """
    if bounds is None:
        bounds = np.unique(np.concatenate([np.sort(probs[labels]), np.geomspace(1e-4, 1, 60)]))
    positives = max(int(labels.sum()), 1)
    scope = probs[in_scope]
    rows = []
    for low in bounds:
        kept = probs[labels] >= low
        caught_small = (probs[labels] >= high).sum()
        escalated_pos = (kept & (probs[labels] < high)).sum()
        recall = float((caught_small + large_recall * escalated_pos) / positives)
        share = float(((scope >= low) & (scope < high)).mean()) if scope.size else 0.0
        cost = 1000 * (small_usd_per_item + share * large_usd_per_item)
        rows.append(
            {"low": float(low), "recall": recall, "escalated_share": share, "usd_per_1k": cost}
        )
    return rows


def choose_cascade(
    probs: Floats,
    labels: Bools,
    in_scope: Bools,
    *,
    high: float,
    target_recall: float,
    small_usd_per_item: float,
    large_usd_per_item: float,
    large_recall: float = 1.0,
) -> CascadeChoice:
    """The cheapest ``low`` whose expected recall meets ``target_recall`` (ties: the higher).

    Raises:
        ValueError: no threshold reaches the target (the large model's recall is too low).
    """
    if not labels.any():
        raise ValueError("calibration needs positives")
    curve = cascade_curve(
        probs,
        labels,
        in_scope,
        high=high,
        small_usd_per_item=small_usd_per_item,
        large_usd_per_item=large_usd_per_item,
        large_recall=large_recall,
    )
    ok = [r for r in curve if r["recall"] >= target_recall - 1e-12]
    if not ok:
        raise ValueError(
            f"no threshold reaches recall {target_recall} with a large-model recall of "
            f"{large_recall}: lower the target or improve the large model"
        )
    best = min(ok, key=lambda r: (r["usd_per_1k"], -r["low"]))
    return CascadeChoice(
        low=best["low"],
        high=high,
        target_recall=target_recall,
        large_recall_assumed=large_recall,
        small_recall_at_low=float((probs[labels] >= best["low"]).mean()),
        escalated_share=best["escalated_share"],
        expected_usd_per_1k_items=best["usd_per_1k"],
        all_large_usd_per_1k_items=1000 * large_usd_per_item,
        curve=curve,
    )


def _metrics(predicted: Bools, labels: Bools, cost: float, n: int) -> dict[str, Any]:
    tp = int((predicted & labels).sum())
    positives, flagged = int(labels.sum()), int(predicted.sum())
    return {
        "items": n,
        "positives": positives,
        "flagged": flagged,
        "true_positives": tp,
        "recall": tp / positives if positives else math.nan,
        "precision": tp / flagged if flagged else math.nan,
        "cost_usd": cost,
        "usd_per_1k_items": 1000 * cost / n if n else math.nan,
        "usd_per_positive_found": cost / tp if tp else math.nan,
    }


def compare_paths(
    probs: Floats,
    labels: Bools,
    large_says: Bools,
    *,
    low: float,
    high: float,
    small_usd: Floats,
    large_usd: Floats,
) -> dict[str, dict[str, Any]]:
    """All-small, all-large and the cascade on the same items (each with a large verdict).

    Args:
        probs: small-model probabilities.
        labels: the reference labels.
        large_says: the large model's verdict (True = adverse drug event) per item.
        low, high: the cascade's thresholds; all-small flags ``p >= low``.
        small_usd, large_usd: what each path costs per item.
    """
    n = probs.size
    escalated = (probs >= low) & (probs < high)
    cascade = (probs >= high) | (escalated & large_says)
    return {
        "all_small": _metrics(probs >= low, labels, float(small_usd.sum()), n),
        "all_large": _metrics(large_says, labels, float(large_usd.sum()), n),
        "cascade": {
            **_metrics(cascade, labels, float(small_usd.sum() + large_usd[escalated].sum()), n),
            "escalated": int(escalated.sum()),
        },
    }


def sweep(
    probs: Floats,
    labels: Bools,
    large_says: Bools,
    *,
    high: float,
    small_usd: Floats,
    large_usd: Floats,
) -> list[dict[str, float]]:
    """The measured cost/recall curve of the cascade as ``low`` moves (for the PNG)."""
    rows = []
    for low in np.unique(np.concatenate([[0.0], probs])):
        m = compare_paths(
            probs,
            labels,
            large_says,
            low=float(low),
            high=high,
            small_usd=small_usd,
            large_usd=large_usd,
        )["cascade"]
        rows.append({"low": float(low), "recall": m["recall"], "cost_usd": m["cost_usd"]})
    return rows


def large_recall_record(
    measured: dict[str, Any], *, model: str, prompt_sha256: str, split: str, measured_at: str
) -> dict[str, Any]:
    """What `ladder-eval` measured of the served large model, as kept for the lane's policy."""
    all_large = measured["paths"]["all_large"]
    return {
        "model": model,
        "prompt_sha256": prompt_sha256,
        "split": split,
        "sample": measured["sample"],
        "positives": all_large["positives"],
        "recall": all_large["recall"],
        "precision": all_large["precision"],
        "human_review": measured["human_review"],
        "measured_at": measured_at,
    }


def recall_validated(
    record: dict[str, Any] | None,
    *,
    model: str,
    prompt_sha256: str,
    target_recall: float,
    min_positives: int,
) -> bool:
    """Whether the model's "no adverse event" may close an item without a human.

    Only when its recall on labelled positives was measured, for this model and this prompt, on
    at least ``min_positives`` positives, and reached ``target_recall``. Anything else (no
    measurement, another prompt, too few positives, recall short) is not validated.
    """
    if not record or record.get("model") != model or record.get("prompt_sha256") != prompt_sha256:
        return False
    recall = record.get("recall")
    if not isinstance(recall, int | float) or math.isnan(recall):
        return False
    return int(record.get("positives", 0)) >= min_positives and recall >= target_recall
