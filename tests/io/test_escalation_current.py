"""The escalation lane pays no large-model call for a withdrawn citation or a superseded version."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from tasks.schemas import DECISION, ESCALATION, WITHDRAWAL
from tasks.services.escalation import pending_escalations
from tasks.services.runtime import Runtime
from tasks.settings import load_settings

T1, T2 = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)


def _rows(keys, at):
    return pl.DataFrame(
        {
            "item_id": [k[0] for k in keys],
            "content_hash": [k[1] for k in keys],
            "pub_date": [date(2026, 1, 1)] * len(keys),
            "pub_month": ["2026-01"] * len(keys),
            "products": [["aspirin"]] * len(keys),
            "route": ["warm"] * len(keys),
            "workflow": ["nightly-literature-scan"] * len(keys),
            "path": ["escalate"] * len(keys),
            "decision": ["escalated"] * len(keys),
            "decided_at": [at] * len(keys),
            "escalated_at": [at] * len(keys),
            "run_id": ["r"] * len(keys),
            "chunk_id": ["c"] * len(keys),
            "title": ["t"] * len(keys),
            "abstract": ["a"] * len(keys),
            "probability": [0.5] * len(keys),
            "reason": ["unsure"] * len(keys),
            "model": ["m"] * len(keys),
            "cost_usd": [0.0] * len(keys),
        }
    )


def test_withdrawn_and_superseded_escalations_are_not_pending(isolated_home):
    runtime = Runtime.for_settings(load_settings())
    lake = runtime.lake
    first = [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")]  # 4: escalated, no decision yet
    lake.append_new(
        "escalations",
        _rows(first, T1),
        ESCALATION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem="e1",
    )
    lake.append_new(
        "decisions",
        _rows(first[:3], T1),
        DECISION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem="d1",
    )
    revised = [("1", "a2")]  # item 1 came back revised and was escalated again
    lake.append_new(
        "escalations",
        _rows(revised, T2),
        ESCALATION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem="e2",
    )
    lake.append_new(
        "decisions",
        _rows(revised, T2),
        DECISION,
        keys=["item_id", "content_hash"],
        partition_by="pub_month",
        stem="d2",
    )
    withdrawal = pl.DataFrame(
        {
            "item_id": ["2"],
            "pmid_version": ["1"],
            "source_file": ["pubmed25n0001.xml.gz"],
            "reason": ["medline_delete_citation"],
            "known": [True],
            "decisions_withdrawn": [1],
            "inbox_closed": [False],
            "run_id": ["r"],
            "withdrawn_at": [T2],
            "month": ["2026-12"],
        }
    )
    lake.append_new(
        "withdrawals", withdrawal, WITHDRAWAL, keys=["item_id"], partition_by="month", stem="w"
    )

    pending, _ = pending_escalations(runtime, None)

    assert sorted(pending.select("item_id", "content_hash").rows()) == [
        ("1", "a2"),  # the current version of 1, not the superseded "a"
        ("3", "c"),
        ("4", "d"),  # no decision yet: it stays
    ]  # 2 was withdrawn
