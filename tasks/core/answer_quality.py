"""Grounded-answer rate: how often what `ask` shows is fully supported by what it cites.

One row per answer served (``ANSWER_GROUNDING``): the tier that served it (``summary``,
``cache`` for hot / warm / semantic hits, ``retrieval`` for the extractive rung, ``composed``
for a model's answer), the model or composer, its grounded share, and whether it was a plain
refusal ("the corpus has nothing about ..."). The rate is grounded answers over answers that
claim something: refusals are counted apart, not as grounded answers, so saying "nothing
found" never flatters the rate. An answer whose grounding was never checked (a cache entry
older than the check) counts as not grounded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

CACHE_TIERS = frozenset({"hot", "warm", "semantic"})
RATE_COLUMNS = {
    "day": pl.String,
    "tier": pl.String,
    "model": pl.String,
    "answers": pl.Int64,
    "refusals": pl.Int64,
    "grounded": pl.Int64,
    "grounded_rate": pl.Float64,
}


def product_tier(served_by: str, composer: str) -> str:
    """The metric's tier of an answer served by cache tier ``served_by`` and ``composer``."""
    if served_by == "summary":
        return "summary"
    if served_by in CACHE_TIERS:
        return "cache"
    return "composed" if composer.startswith("model:") else "retrieval"


def answer_row(
    *,
    event_id: str,
    served_by: str,
    composer: str,
    grounded_share: float | None,
    refusal: bool,
    query_class: str,
    now: datetime,
) -> dict[str, Any]:
    """One ANSWER_GROUNDING row; a summary is grounded by construction (rows of the lake)."""
    tier = product_tier(served_by, composer)
    share = 1.0 if tier == "summary" and grounded_share is None else grounded_share
    return {
        "event_id": event_id,
        "tier": tier,
        "served_by": served_by,
        "model": composer,
        "grounded_share": share,
        "fully_grounded": share is not None and share >= 1.0,
        "refusal": refusal,
        "query_class": query_class,
        "created_at": now,
        "day": now.date().isoformat(),
    }


def grounded_rates(rows: pl.DataFrame) -> pl.DataFrame:
    """Per day, tier and model: answers, refusals, grounded answers and the grounded rate."""
    if rows.is_empty():
        return pl.DataFrame(schema=RATE_COLUMNS)
    claims = ~pl.col("refusal")
    return (
        rows.group_by("day", "tier", "model")
        .agg(
            pl.len().cast(pl.Int64).alias("answers"),
            pl.col("refusal").sum().cast(pl.Int64).alias("refusals"),
            (pl.col("fully_grounded") & claims).sum().cast(pl.Int64).alias("grounded"),
        )
        .with_columns(
            (pl.col("grounded") / (pl.col("answers") - pl.col("refusals"))).alias("grounded_rate")
        )
        .select(list(RATE_COLUMNS))
        .sort("day", "tier", "model")
    )


def low_rate_days(rates: pl.DataFrame, min_rate: float) -> pl.DataFrame:
    """Days whose grounded-answer rate over every tier falls below ``min_rate`` (the alert)."""
    if rates.is_empty():
        return pl.DataFrame(
            schema={"day": pl.String, "answers": pl.Int64, "grounded": pl.Int64, "rate": pl.Float64}
        )
    return (
        rates.group_by("day")
        .agg(
            (pl.col("answers") - pl.col("refusals")).sum().alias("answers"),
            pl.col("grounded").sum().alias("grounded"),
        )
        .filter(pl.col("answers") > 0)
        .with_columns((pl.col("grounded") / pl.col("answers")).alias("rate"))
        .filter(pl.col("rate") < min_rate)
        .sort("day")
    )
