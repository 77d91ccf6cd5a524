"""Revised and withdrawn citations: which decision of an item is current. Pure.

A citation can come back revised (same pmid, a new MEDLINE version or changed content): it is
screened again and its new decision supersedes the old one. Both stay in the lake; the current
one is the newest. A withdrawn citation (NLM deleted it) has no current decision at all.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl


def revision_marks(pending: pl.DataFrame, earlier: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``pending`` with ``revised_at`` and ``supersedes`` for items decided before.

    Args:
        pending: items about to be screened (item_id, content_hash, ...).
        earlier: decisions already in the lake (item_id, content_hash, decided_at).
        now: when the revision was seen.

    Returns:
        ``pending`` with ``revised_at`` (``now``, or null for an item never decided) and
        ``supersedes`` (the content hash of the item's newest earlier decision, or null).
    """
    stamp = pl.lit(now).cast(pl.Datetime("us", "UTC"))
    if earlier.is_empty() or pending.is_empty():
        return pending.with_columns(
            pl.lit(None, pl.Datetime("us", "UTC")).alias("revised_at"),
            pl.lit(None, pl.String).alias("supersedes"),
        )
    latest = _newest_versions(earlier).rename({"content_hash": "supersedes"})
    marked = pending.join(latest, on="item_id", how="left")
    return marked.with_columns(
        pl.when(pl.col("supersedes").is_not_null()).then(stamp).otherwise(None).alias("revised_at")
    )


def current_versions(decisions: pl.DataFrame, withdrawn: pl.Series | None = None) -> pl.DataFrame:
    """Decision rows of each item's current version; withdrawn items have none.

    The current version is the one first decided last, so every row of that version stays
    (the scan's and the escalation lane's) and a superseded version's go, even when the
    escalation lane decides the old version after the revision was screened.
    """
    if decisions.is_empty():
        return decisions
    kept = decisions.join(_newest_versions(decisions), on=["item_id", "content_hash"], how="semi")
    if withdrawn is not None and withdrawn.len():
        kept = kept.filter(~pl.col("item_id").is_in(withdrawn.implode()))
    return kept


def _newest_versions(decisions: pl.DataFrame) -> pl.DataFrame:
    """(item_id, content_hash) of each item's version whose first decision is the latest."""
    firsts = decisions.group_by("item_id", "content_hash").agg(pl.col("decided_at").min())
    return (
        firsts.sort("decided_at", "content_hash")
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("content_hash").last())
    )
