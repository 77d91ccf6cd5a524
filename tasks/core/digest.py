"""The daily digest per product, materialised from decisions. Pure."""

from __future__ import annotations

from datetime import datetime

import polars as pl


def latest_outcome_per_item(decisions: pl.DataFrame) -> pl.DataFrame:
    """One row per item: its latest decision, the cost of every row, the small model's score.

    An item the scan escalated gets a second row when the escalation lane decides it; the
    digest must count the item once, with the lane's verdict and both costs.
    """
    return (
        decisions.sort("decided_at")
        .group_by("item_id", "content_hash", maintain_order=True)
        .agg(
            pl.col("pub_month", "pub_date", "products", "decision").last(),
            pl.col("cost_usd").sum(),
            pl.col("probability").max(),
        )
    )


def product_digest(decisions: pl.DataFrame, *, top_n: int, refreshed_at: datetime) -> pl.DataFrame:
    """One row per (publication day, product): items, outcomes, cost and the top items.

    Args:
        decisions: decision rows (products, pub_date, pub_month, decision, probability, ...).
        top_n: how many item ids to list, highest probability first.
        refreshed_at: when this digest was built (its freshness).
    """
    exploded = decisions.filter(pl.col("products").list.len() > 0).explode("products")
    by_product = exploded.rename({"products": "product"}).sort(
        "probability", descending=True, nulls_last=True
    )
    return (
        by_product.group_by("pub_month", "pub_date", "product")
        .agg(
            pl.len().cast(pl.Int64).alias("items"),
            (pl.col("decision") == "case_candidate").sum().cast(pl.Int64).alias("case_candidates"),
            (pl.col("decision") == "escalated").sum().cast(pl.Int64).alias("escalated"),
            (pl.col("decision") == "closed_negative").sum().cast(pl.Int64).alias("closed_negative"),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("item_id").head(top_n).alias("top_item_ids"),
            pl.col("probability").max().alias("max_probability"),
        )
        .with_columns(pl.lit(refreshed_at).dt.convert_time_zone("UTC").alias("refreshed_at"))
        .sort("pub_date", "product")
    )
