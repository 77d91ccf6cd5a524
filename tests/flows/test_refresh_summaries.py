"""Flow `refresh-summaries` under the Prefect harness, on real MEDLINE records and FAERS tables."""

from datetime import UTC, date, datetime

import polars as pl
import pytest

from flows.refresh_summaries import refresh_summaries
from tasks.io.lake import Lake
from tasks.io.medline import read_medline
from tasks.rules import load_products
from tasks.schemas import DECISION
from tasks.settings import load_settings
from tests.conftest import real_medline_records, write_medline

pytestmark = pytest.mark.slow


def _decided(path, lake):
    """Decision rows for the records in ``path``, as a scan about propranolol would leave them."""
    citations, _ = read_medline(path)
    ids = citations.filter(pl.col("abstract").str.len_chars() > 0)["pmid"].to_list()[:4]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "item_id": ids,
            "content_hash": ["h"] * len(ids),
            "workflow": ["nightly-literature-scan"] * len(ids),
            "pub_date": [date(2021, 1, 1 + i) for i in range(len(ids))],
            "pub_month": ["2021-01"] * len(ids),
            "products": [["propranolol"]] * len(ids),
            "route": ["warm"] * len(ids),
            "path": ["small"] * len(ids),
            "probability": [0.5] * len(ids),
            "decision": ["escalated", "case_candidate", "closed_negative", "escalated"][: len(ids)],
            "reason": ["test"] * len(ids),
            "model": ["minilm-scorer"] * len(ids),
            "cost_usd": [0.0] * len(ids),
            "run_id": ["r"] * len(ids),
            "chunk_id": ["c"] * len(ids),
            "decided_at": [now] * len(ids),
        }
    )
    lake.write("decisions", rows, DECISION, partition_by="pub_month", stem="test")
    return ids


def test_refresh_indexes_once_and_materialises_summaries(isolated_home, tmp_path):
    source = write_medline(tmp_path / "scan.xml", real_medline_records(6))
    settings = load_settings()
    ids = _decided(source, Lake(settings.lake_dir))
    params = dict(sources=[str(source)])

    first = refresh_summaries(**params)
    assert first.abstract_sources == len(ids)
    assert first.abstract_chunks_inserted == first.abstract_chunks > 0
    assert first.reference_chunks_inserted == first.reference_chunks > 0
    assert first.faers_signals > 0
    assert first.summaries == 2 * len(load_products(settings).products)

    second = refresh_summaries(**params)
    assert second.index_version == first.index_version
    assert second.abstract_chunks_inserted == 0 and second.reference_chunks_inserted == 0

    summaries = Lake(settings.lake_dir).read("summaries/product_knowledge")
    literature = summaries.filter(
        (pl.col("product") == "propranolol") & (pl.col("kind") == "literature")
    ).row(0, named=True)
    assert set(literature["sources"]) == {f"pmid:{i}" for i in ids[:2] + ids[3:]}
    assert literature["freshest_source"] == "2021-01-04"
    signals = summaries.filter(
        (pl.col("product") == "propranolol") & (pl.col("kind") == "signals")
    ).row(0, named=True)
    assert signals["sources"] == ["faers:betablocker500"] and "PRR" in signals["text"]
    aspirin = summaries.filter(
        (pl.col("product") == "aspirin") & (pl.col("kind") == "signals")
    ).row(0, named=True)
    assert "not in the FAERS count tables" in aspirin["text"]
