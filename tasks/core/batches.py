"""Work batches: the unit of work, checkpoint and resume. Ids are derived from content."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import polars as pl

ROUTE_PRIORITY = {"hot": 0, "warm": 1, "cold": 2}


def stable_id(parts: list[str], prefix: str) -> str:
    """A short id that depends only on ``parts`` (order-insensitive)."""
    digest = hashlib.sha256("\x1f".join(sorted(parts)).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:20]}"


def chunk_id(chunk: pl.DataFrame) -> str:
    keys = (chunk["item_id"] + ":" + chunk["content_hash"]).to_list()
    return stable_id(keys, "chunk")


def iter_chunks(frame: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    """Chunks of ``size`` rows, hot items first, then by item id: deterministic order."""
    ordered = frame.with_columns(
        pl.col("route").replace_strict(ROUTE_PRIORITY, default=3).alias("_priority")
    ).sort("_priority", "item_id")
    for start in range(0, ordered.height, size):
        yield ordered.slice(start, size).drop("_priority")
