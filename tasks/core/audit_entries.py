"""Audit entries of record for screening decisions: codes and ids only, never free text. Pure."""

from __future__ import annotations

from typing import Any

import polars as pl


def decision_entries(decided: pl.DataFrame) -> list[dict[str, Any]]:
    """One entry per decision: item id, content hash, route, path, decision and reason codes.

    The planner's ``reason`` column is prose with numbers in it; the entry keeps a stable code
    (``PLAN_<PATH>_<DECISION>``) plus the probability, from which the prose is re-derived.
    The key makes re-running a chunk append nothing twice.
    """
    frame = decided.select(
        pl.concat_str(
            [pl.lit("decision"), "workflow", "item_id", "content_hash"], separator=":"
        ).alias("key"),
        pl.lit("decision").alias("kind"),
        "workflow",
        "run_id",
        "chunk_id",
        "item_id",
        "content_hash",
        "route",
        "path",
        "decision",
        pl.concat_list(
            pl.concat_str([pl.lit("PLAN"), "path", "decision"], separator="_").str.to_uppercase()
        ).alias("reason_codes"),
        pl.col("probability").fill_nan(None).round(6),
        "model",
        pl.col("cost_usd").round(12),
    )
    return frame.to_dicts()
