"""Screening metrics against the MeSH label. Pure: planned frames in, numbers out."""

from __future__ import annotations

from typing import Any

import polars as pl

from tasks.core.screening_stats import bootstrap_interval, wss_at_recall

KEPT = ("case_candidate", "escalated")


def _wss(in_scope: pl.DataFrame) -> float | None:
    """WSS@95 of the small model's ranking of in-scope items (None without a positive)."""
    if not in_scope.filter(pl.col("label_ade")).height:
        return None
    scores = in_scope["probability"].fill_null(0.0).to_numpy()
    return round(wss_at_recall(scores, in_scope["label_ade"].to_numpy().astype(bool)), 4)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def path_shares(frame: pl.DataFrame) -> dict[str, float]:
    total = frame.height
    counts = frame.group_by("path").len().sort("path").iter_rows()
    return {str(path): round(n / total, 4) for path, n in counts} if total else {}


def screening_metrics(planned: pl.DataFrame, *, low: float, high: float) -> dict[str, Any]:
    """Recall, precision and path mix of the cascade and of the small model alone.

    Args:
        planned: rows with ``label_ade``, ``probability`` (for every row), ``products``,
            ``path`` and ``decision`` as the planner set them.
        low: the threshold below which the small model closes an item.
        high: the threshold at or above which it raises a case candidate.
    """
    positives = planned.filter(pl.col("label_ade"))
    in_scope = planned.filter(pl.col("products").list.len() > 0)
    in_scope_pos = in_scope.filter(pl.col("label_ade"))
    kept = pl.col("decision").is_in(KEPT)
    above_low = pl.col("probability") >= low
    above_high = pl.col("probability") >= high

    def count(frame: pl.DataFrame, expr: pl.Expr) -> int:
        return int(frame.filter(expr).height)

    return {
        "items": planned.height,
        "positives": positives.height,
        "small_model_all_items": {
            "recall_at_low": _ratio(count(positives, above_low), positives.height),
            "precision_at_low": _ratio(count(positives, above_low), count(planned, above_low)),
            "share_at_or_above_low": _ratio(count(planned, above_low), planned.height),
            "recall_at_high": _ratio(count(positives, above_high), positives.height),
            "precision_at_high": _ratio(count(positives, above_high), count(planned, above_high)),
        },
        "in_scope": {
            "items": in_scope.height,
            "share_of_items": _ratio(in_scope.height, planned.height),
            "positives": in_scope_pos.height,
            "recall": _ratio(count(in_scope_pos, kept), in_scope_pos.height),
            "recall_95ci_bootstrap": [
                round(b, 4)
                for b in bootstrap_interval(in_scope_pos.select(kept).to_series().to_numpy())
            ],
            "share_left_open": _ratio(count(in_scope, kept), in_scope.height),
            "wss_at_95": _wss(in_scope),
            "missed_positives": in_scope_pos.filter(~kept)["item_id"].to_list(),
            "precision_of_kept": _ratio(count(in_scope_pos, kept), count(in_scope, kept)),
            "path_share": path_shares(in_scope),
        },
        "cascade_all_items": {
            "recall": _ratio(count(positives, kept), positives.height),
            "path_share": path_shares(planned),
        },
    }
