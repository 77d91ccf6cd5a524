"""Intake shaping: window selection, content hashes and in-batch de-duplication. Pure."""

from __future__ import annotations

import hashlib
from datetime import date

import polars as pl

from tasks.core.labels import ade_label, split_of
from tasks.tools.dates import normalise_pub_date

HASHED_FIELDS = ("pmid", "title", "abstract", "journal", "pub_date_raw", "mesh_terms", "chemicals")


def content_hashes(frame: pl.DataFrame) -> pl.Series:
    """sha256 over the citation's content fields: the same citation always hashes the same.

    A MEDLINE version past 1 (``<PMID Version="2">``) is hashed too, so a new version of a
    citation is a revision even where its text did not change; version 1 (and a source with no
    version) hashes as before, so no decided item turns pending.
    """
    version = pl.col("pmid_version") if "pmid_version" in frame.columns else pl.lit(None)
    suffix = (
        pl.when(version.is_null() | (version == "1"))
        .then(pl.lit(""))
        .otherwise(pl.lit("\x1fversion=") + version.cast(pl.String))
    )
    joined = frame.select(
        pl.concat_str([pl.col(c).fill_null("") for c in HASHED_FIELDS], separator="\x1f") + suffix
    ).to_series()
    return pl.Series(
        "content_hash",
        [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in joined.to_list()],
        dtype=pl.String,
    )


def with_derived_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Add item id, content hash, normalised date, split and label."""
    return frame.with_columns(
        pl.col("pmid").str.strip_chars().alias("item_id"),
        content_hashes(frame),
        *normalise_pub_date(pl.col("pub_date_raw")),
        split_of(pl.col("pmid")).alias("split"),
        ade_label(pl.col("mesh_terms")).alias("label_ade"),
    )


def select_window(
    frame: pl.DataFrame,
    *,
    since: date | None,
    until: date | None,
    split: str,
    limit: int | None,
) -> pl.DataFrame:
    """Rows in the publication-date window and split, first ``limit`` in source order.

    Rows whose date or pmid cannot be read are kept whatever the window, so that validation
    quarantines them instead of a filter dropping them unseen.
    """
    keep = pl.lit(True)
    if since is not None:
        keep = keep & (pl.col("pub_date") >= since)
    if until is not None:
        keep = keep & (pl.col("pub_date") <= until)
    if split != "all":
        keep = keep & (pl.col("split") == split)
    unreadable = pl.col("pub_date").is_null() | pl.col("split").is_null()
    chosen = frame.filter(keep.fill_null(False) | unreadable)
    return chosen.head(limit) if limit is not None else chosen


def split_duplicates(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each pmid; return (kept, later rows with their reason).

    A later row with the same content is an exact duplicate; one with other content is a
    conflicting version that a human should look at. Both are quarantined, never dropped.
    """
    ranked = frame.with_columns(
        pl.int_range(pl.len()).over("item_id").alias("_seen"),
        pl.col("content_hash").first().over("item_id").alias("_first_hash"),
    )
    kept = ranked.filter(pl.col("_seen") == 0).drop("_seen", "_first_hash")
    duplicates = ranked.filter(pl.col("_seen") > 0).with_columns(
        pl.lit("pmid").alias("field"),
        pl.when(pl.col("content_hash") == pl.col("_first_hash"))
        .then(pl.lit("duplicate pmid in this batch (identical content)"))
        .otherwise(pl.lit("duplicate pmid in this batch (conflicting content)"))
        .alias("reason"),
    )
    return kept, duplicates.drop("_seen", "_first_hash")
