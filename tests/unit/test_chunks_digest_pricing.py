from datetime import UTC, date, datetime

import polars as pl
import pytest

from tasks.core.batches import chunk_id, iter_chunks
from tasks.core.digest import product_digest
from tasks.core.pricing import call_cost
from tasks.rules import ModelPrice


def test_chunks_put_hot_items_first_and_ids_depend_on_content_only():
    frame = pl.DataFrame(
        {
            "item_id": ["3", "1", "2", "4"],
            "content_hash": ["c", "a", "b", "d"],
            "route": ["cold", "warm", "hot", "cold"],
        }
    )
    chunks = list(iter_chunks(frame, 2))
    assert [c["item_id"].to_list() for c in chunks] == [["2", "1"], ["3", "4"]]
    assert chunk_id(chunks[0]) == chunk_id(chunks[0].reverse())
    assert chunk_id(chunks[0]) != chunk_id(
        chunks[0].with_columns(pl.lit("z").alias("content_hash"))
    )


def test_call_cost_prices_tokens_and_gpu_seconds():
    price = ModelPrice(
        backend="b",
        model="m",
        usd_per_1k_input_tokens=0.002,
        usd_per_1k_output_tokens=0.01,
        usd_per_gpu_second=0.5,
    )
    assert call_cost(price, input_tokens=1500, output_tokens=200, gpu_seconds=2) == pytest.approx(
        0.003 + 0.002 + 1.0
    )
    with pytest.raises(ValueError):
        call_cost(price, input_tokens=-1)


def test_digest_counts_outcomes_per_product_and_day():
    decisions = pl.DataFrame(
        {
            "item_id": ["1", "2", "3", "4"],
            "pub_month": ["2021-01"] * 4,
            "pub_date": [date(2021, 1, 5)] * 4,
            "products": [["aspirin", "heparin"], ["aspirin"], ["heparin"], []],
            "decision": ["case_candidate", "escalated", "closed_negative", "closed_out_of_scope"],
            "probability": [0.9, 0.2, 0.001, None],
            "cost_usd": [0.1, 0.2, 0.3, 0.0],
        }
    )
    out = product_digest(decisions, top_n=1, refreshed_at=datetime(2026, 1, 1, tzinfo=UTC))
    rows = {r["product"]: r for r in out.to_dicts()}
    assert set(rows) == {"aspirin", "heparin"}
    assert (
        rows["aspirin"]["items"],
        rows["aspirin"]["case_candidates"],
        rows["aspirin"]["escalated"],
    ) == (2, 1, 1)
    assert rows["aspirin"]["top_item_ids"] == ["1"]
    assert rows["heparin"]["closed_negative"] == 1
    assert rows["heparin"]["cost_usd"] == pytest.approx(0.4)


def test_an_item_decided_by_scan_and_lane_counts_once_with_both_costs():
    from tasks.core.digest import latest_outcome_per_item

    rows = pl.DataFrame(
        {
            "item_id": ["1", "1", "2"],
            "content_hash": ["h", "h", "k"],
            "pub_month": ["2021-01"] * 3,
            "pub_date": [date(2021, 1, 5)] * 3,
            "products": [["aspirin"]] * 3,
            "decision": ["escalated", "case_candidate", "closed_negative"],
            "probability": [0.2, None, 0.001],
            "cost_usd": [0.001, 0.05, 0.001],
            "decided_at": [
                datetime(2026, 1, 1, 2, tzinfo=UTC),
                datetime(2026, 1, 1, 4, tzinfo=UTC),
                datetime(2026, 1, 1, 2, tzinfo=UTC),
            ],
        }
    )
    out = product_digest(
        latest_outcome_per_item(rows), top_n=2, refreshed_at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    (row,) = out.to_dicts()
    assert (row["items"], row["case_candidates"], row["escalated"], row["closed_negative"]) == (
        2,
        1,
        0,
        1,
    )
    assert row["cost_usd"] == pytest.approx(0.052)
    assert row["max_probability"] == pytest.approx(0.2)
