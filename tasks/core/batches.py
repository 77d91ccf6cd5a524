"""Work batches: the unit of work, checkpoint and resume. Ids are derived from content."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

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


def fold(results: Sequence[Any], of: type[Any]) -> dict[str, Any]:
    """Field-wise totals of per-chunk results (dataclasses ``of``): numbers summed, count maps
    merged, text fields (ids) left out. Every numeric field is present, 0 when no chunk ran."""
    totals: dict[str, Any] = {}
    for f in dataclasses.fields(of):
        values = [getattr(r, f.name) for r in results]
        if f.type in ("int", "float", int, float):
            totals[f.name] = sum(values, 0.0 if f.type in ("float", float) else 0)
        elif str(f.type).startswith("dict"):
            merged: Counter[str] = Counter()
            for value in values:
                merged.update(value)
            totals[f.name] = dict(merged)
    return totals
