"""Rows of the cost ledger: one constructor, so every priced call is booked the same way.

The ledger is what FinOps reads; a row per paid (or cache-served) call, keyed by a call id
derived from content, so a replayed call is booked once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from tasks.schemas import LEDGER


def ledger_row(
    *,
    call_id: str,
    workflow: str,
    run_id: str,
    chunk_id: str,
    task: str,
    model: str,
    backend: str,
    pattern: str,
    n_items: int,
    input_tokens: int,
    cost_usd: float,
    now: datetime,
    output_tokens: int = 0,
    gpu_seconds: float = 0.0,
    item_id: str | None = None,
) -> dict[str, Any]:
    """One LEDGER row; ``day`` (the partition) is the UTC date of ``now``.

    ``item_id`` names the item a call was made for (a verdict on one abstract), so FinOps can
    attribute its cost; a call shared by a chunk leaves it null and FinOps splits it over the
    chunk's decided items.
    """
    return {
        "call_id": call_id,
        "workflow": workflow,
        "run_id": run_id,
        "chunk_id": chunk_id,
        "item_id": item_id,
        "task": task,
        "model": model,
        "backend": backend,
        "pattern": pattern,
        "n_items": n_items,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "gpu_seconds": gpu_seconds,
        "cost_usd": cost_usd,
        "created_at": now,
        "day": now.date().isoformat(),
    }


def ledger_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """``rows`` as a frame of exactly the LEDGER schema."""
    return pl.from_arrow(pa.Table.from_pylist(list(rows), schema=LEDGER))  # type: ignore[return-value]
