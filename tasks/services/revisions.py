"""Revised and withdrawn citations of the literature lanes (see tasks/core/revisions.py).

- A revision (an item decided before, back with a new version or content) is screened again;
  ``mark`` stamps it with ``revised_at`` and the content hash it ``supersedes`` before it is
  screened, so its new decision carries both. ``first_seen_at`` stays the first retrieval.
- A withdrawal (NLM's ``<DeleteCitation>``) is a row of ``lake/withdrawals`` with the update
  file and time, an audit chain entry, and the item's open inbox entry closed as
  ``withdrawn``. Decisions are never deleted: readers of current decisions leave them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tasks.core.audit_entries import withdrawal_entries
from tasks.core.batches import stable_id
from tasks.core.revisions import current_versions, revision_marks
from tasks.schemas import WITHDRAWAL
from tasks.services.runtime import Runtime

REASON = "medline_delete_citation"


def mark(runtime: Runtime, pending: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``pending`` with ``revised_at``/``supersedes`` for the items that were decided before.

    Only the decisions of the block's own items are read: the key index says which of them
    were decided at all (usually none), and DuckDB keeps just their rows while it streams. A
    read of every decision per block made memory grow with the history.
    """
    ids = pending.select("item_id").drop_nulls().unique()
    fresh = runtime.lake.unseen("decisions", ids, keys=["item_id"])
    decided = ids.join(fresh, on="item_id", how="anti")["item_id"].to_list()
    return revision_marks(pending, _decisions_of(runtime, decided), now)


def _decisions_of(runtime: Runtime, item_ids: list[str]) -> pl.DataFrame:
    """(item_id, content_hash, decided_at) of every decision about ``item_ids``."""
    if not item_ids:
        return pl.DataFrame()
    return runtime.lake.read(
        "decisions",
        columns=["item_id", "content_hash", "decided_at"],
        where="list_contains($2, item_id)",
        params=[item_ids],
    )


def withdrawn_ids(runtime: Runtime) -> pl.Series:
    """Item ids whose citation was withdrawn (NLM deleted it)."""
    rows = runtime.lake.read("withdrawals", columns=["item_id"])
    return rows["item_id"].unique() if not rows.is_empty() else pl.Series("item_id", [], pl.String)


def current_decisions(runtime: Runtime, decisions: pl.DataFrame) -> pl.DataFrame:
    """``decisions`` of each item's current version, withdrawn items left out."""
    return current_versions(decisions, withdrawn_ids(runtime))


@dataclass(frozen=True)
class Withdrawn:
    """What one update file's ``<DeleteCitation>`` did."""

    source_file: str
    listed: int  # pmids the file deletes
    known: int  # of them, decided here before: their decisions are now withdrawn
    inbox_closed: int


def withdraw(
    runtime: Runtime,
    deleted: Sequence[tuple[str, str | None]],
    source_file: str,
    run_id: str,
    now: datetime,
) -> Withdrawn:
    """Withdraw the decisions of ``deleted`` (pmid, version) pmids; record unknown ones as such.

    Idempotent per (pmid, file): processing the same file again writes nothing twice.
    """
    if not deleted:
        return Withdrawn(source_file, 0, 0, 0)
    frame = pl.DataFrame(
        [{"item_id": p, "pmid_version": v} for p, v in deleted],
        schema={"item_id": pl.String, "pmid_version": pl.String},
    ).unique("item_id", keep="last", maintain_order=True)
    counts = _decision_counts(runtime, frame["item_id"])
    closed = set(
        runtime.inbox.withdraw(
            [f"literature:{i}" for i in frame["item_id"]], by="source:medline-updates", at=now
        )
    )
    rows = frame.join(counts, on="item_id", how="left").with_columns(
        pl.col("decisions_withdrawn").fill_null(0),
        (pl.col("decisions_withdrawn").fill_null(0) > 0).alias("known"),
        pl.lit(source_file).alias("source_file"),
        pl.lit(REASON).alias("reason"),
        ("literature:" + pl.col("item_id")).is_in(list(closed)).alias("inbox_closed"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("withdrawn_at"),
        pl.lit(now.strftime("%Y-%m")).alias("month"),
    )
    runtime.audit.append(withdrawal_entries(rows), now=now)  # the reason of record first
    stem = stable_id([source_file, *rows["item_id"].to_list()], "withdrawals")
    runtime.lake.append_new(
        "withdrawals",
        rows,
        WITHDRAWAL,
        keys=["item_id", "source_file"],
        partition_by="month",
        stem=stem,
    )
    return Withdrawn(source_file, rows.height, int(rows["known"].sum()), len(closed))


def _decision_counts(runtime: Runtime, ids: pl.Series) -> pl.DataFrame:
    decided = runtime.lake.read(
        "decisions", columns=["item_id"], where="list_contains($2, item_id)", params=[ids.to_list()]
    )
    if decided.is_empty():
        return pl.DataFrame(schema={"item_id": pl.String, "decisions_withdrawn": pl.Int64})
    return (
        decided.filter(pl.col("item_id").is_in(ids.implode()))
        .group_by("item_id")
        .agg(pl.len().cast(pl.Int64).alias("decisions_withdrawn"))
    )
