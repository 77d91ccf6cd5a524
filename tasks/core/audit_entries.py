"""Audit entries of record (screening and triage decisions, reviews, anchors): codes and ids only,
never free text. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from tasks.core.batches import stable_id


def _evidence_codes(decided: pl.DataFrame) -> pl.Expr:
    """``EVIDENCE:<cue>`` for each evidence cue that fired (none when the frame has no cues)."""
    if "evidence" not in decided.columns:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.col("evidence").fill_null([]).list.eval(pl.lit("EVIDENCE:") + pl.element())


def decision_entries(decided: pl.DataFrame) -> list[dict[str, Any]]:
    """One entry per decision: item id, content hash, route, path, decision and reason codes.

    The planner's ``reason`` column is prose with numbers in it; the entry keeps a stable code
    (``PLAN_<PATH>_<DECISION>``, then ``EVIDENCE:<cue>`` per evidence cue that fired) plus the
    probability, from which the prose is re-derived.
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
            pl.concat_str([pl.lit("PLAN"), "path", "decision"], separator="_").str.to_uppercase(),
            _evidence_codes(decided),
        ).alias("reason_codes"),
        pl.col("probability").fill_nan(None).round(6),
        "model",
        pl.col("cost_usd").round(12),
    )
    return frame.to_dicts()


def withdrawal_entries(withdrawals: pl.DataFrame) -> list[dict[str, Any]]:
    """One entry per withdrawn citation (NLM's DeleteCitation): ids and codes only.

    Keyed by pmid and update file, so processing the same file again appends nothing.
    """
    known = pl.when(pl.col("known")).then(pl.lit("DECISIONS_WITHDRAWN"))
    frame = withdrawals.select(
        pl.concat_str([pl.lit("withdrawal"), "item_id", "source_file"], separator=":").alias("key"),
        pl.lit("withdrawal").alias("kind"),
        pl.lit("nightly-literature-scan").alias("workflow"),
        "run_id",
        "item_id",
        "source_file",
        pl.concat_list(
            pl.lit("MEDLINE_DELETE_CITATION"), known.otherwise(pl.lit("NEVER_SEEN"))
        ).alias("reason_codes"),
        "decisions_withdrawn",
        "inbox_closed",
    )
    return frame.to_dicts()


def triage_entries(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chain entries of the triage lane's audit events (decided, reviewed): codes only.

    The entry's key is the event's stable id, so the lane and the review command writing the
    same review append it once. A reviewer's reason of record is free text that may quote the
    case: the chain keeps its sha256, the intake store keeps the text.
    """
    entries = []
    for event in events:
        entry: dict[str, Any] = {
            "key": f"triage:{event['event_id']}",
            "kind": f"triage_{event['event']}",
            "workflow": "urgent-ae-triage",
            "case_id": event["case_id"],
            "status": event["status"],
            "actor": event["actor"],
            "reason_codes": list(event["reasons"]),
            "due_date": _iso(event["due_date"]),
            "at": _iso(event["at"]),
        }
        if event["event"] == "reviewed":
            text = str(event["reason_of_record"])
            entry["reason_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        entries.append(entry)
    return entries


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, date) else None


def anchor_row(
    seq: int, digest: str, *, workflow: str, run_id: str, now: datetime
) -> dict[str, Any]:
    """One AUDIT_ANCHOR row; its id depends only on the head, so a head is recorded once."""
    return {
        "anchor_id": stable_id([str(seq), digest], "anchor"),
        "seq": seq,
        "hash": digest,
        "workflow": workflow,
        "run_id": run_id,
        "anchored_at": now,
        "day": now.date().isoformat(),
    }
