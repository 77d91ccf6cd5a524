"""Cost attributed to the item that caused it, and cost per resolved outcome. Pure."""

import polars as pl
import pytest

from tasks.core.finops import UNATTRIBUTED, UNRESOLVED, attribute, resolved_outcome_costs

CALLS = pl.DataFrame(
    {
        "workflow": ["scan", "lane", "lane", "lane", "triage", "scan"],
        "chunk_id": ["c1", "c9", "c9", "c9", "t1", "c2"],
        "item_id": [None, "101", "101", "102", None, None],
        "cost_usd": [0.000003, 0.000005, 0.000004, 0.000005, 0.00002, 0.000001],
    }
)
MEMBERS = pl.DataFrame(
    {
        "workflow": ["scan", "scan", "scan", "lane"],
        "chunk_id": ["c1", "c1", "c1", "c9"],
        "item_id": ["101", "102", "103", "101"],
    }
)


def test_each_call_goes_to_its_item_and_shared_calls_are_split_or_shown_unattributed():
    got = dict(attribute(CALLS, MEMBERS).iter_rows())
    assert got["101"] == pytest.approx(0.000001 + 0.000009)
    assert got["102"] == pytest.approx(0.000001 + 0.000005)
    assert got["103"] == pytest.approx(0.000001)
    assert got[None] == pytest.approx(0.00002 + 0.000001)  # triage batch, undecided chunk c2
    assert sum(got.values()) == pytest.approx(CALLS["cost_usd"].sum())


def test_a_ledger_without_item_ids_splits_everything_by_chunk():
    got = attribute(CALLS.drop("item_id"), MEMBERS)
    assert got["usd"].sum() == pytest.approx(CALLS["cost_usd"].sum())


def test_cost_per_resolved_outcome_adds_the_review_and_keeps_the_total():
    resolutions = pl.DataFrame(
        {
            "item_id": ["101", "102", "C-1"],
            "kind": ["literature", "literature", "triage"],
            "outcome": ["confirmed_icsr", "not_icsr", "accepted"],
        }
    )
    table = resolved_outcome_costs(attribute(CALLS, MEMBERS), resolutions, reviewer_usd=25.0)
    rows = {r["outcome"]: r for r in table.to_dicts()}
    assert rows["confirmed_icsr"]["model_usd"] == pytest.approx(0.00001)
    assert rows["confirmed_icsr"]["usd_per_outcome"] == pytest.approx(25.00001)
    assert (rows["accepted"]["items"], rows["accepted"]["model_usd"]) == (1, 0.0)
    assert rows[UNRESOLVED]["model_usd"] == pytest.approx(0.000001)  # 103
    assert rows[UNATTRIBUTED]["model_usd"] == pytest.approx(0.000021)
    assert rows[UNATTRIBUTED]["usd_per_outcome"] is None
    assert table["model_usd"].sum() == pytest.approx(CALLS["cost_usd"].sum())
