"""The knowledge adapters on real engines: LanceDB and Parquet in tmp_path, the packaged model."""

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from models.embedder import default_embedder
from tasks.core.cache_keys import checksum
from tasks.core.passages import chunk_documents
from tasks.errors import DataContractError
from tasks.io import faers
from tasks.io.knowledge import ABSTRACT_CHUNKS, KnowledgeStore
from tasks.io.warm_cache import WarmCache

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
DOCS = pl.DataFrame(
    {
        "source_id": ["1001", "1002"],
        "text": [
            "BACKGROUND: Propranolol slows the heart. RESULTS: Bradycardia was seen in 3 of 40.",
            "Cisplatin damages the kidney. Nephrotoxicity limits the dose.",
        ],
        "products": [["propranolol"], ["cisplatin"]],
        "pub_date": [None, None],
    },
    schema_overrides={"pub_date": pl.Date},
)


def _sync(store, docs):
    chunks = chunk_documents(docs, max_chars=200, overlap=1)
    vectors = default_embedder().embed(chunks["text"].to_list())
    return store.sync_chunks(ABSTRACT_CHUNKS, chunks, vectors, "all-MiniLM-L6-v2"), chunks


@pytest.mark.slow
def test_reindexing_is_idempotent_and_drops_stale_chunks(tmp_path):
    store = KnowledgeStore(tmp_path / "vectors")
    inserted, chunks = _sync(store, DOCS)
    assert inserted == chunks.height == store.count(ABSTRACT_CHUNKS)
    version = store.write_manifest(NOW)
    again, _ = _sync(store, DOCS)
    assert again == 0 and store.write_manifest(NOW) == version

    edited = DOCS.with_columns(pl.col("text").str.replace("3 of 40", "4 of 40"))
    inserted, new_chunks = _sync(store, edited)
    assert inserted == 1
    assert store.chunk_ids(ABSTRACT_CHUNKS) == set(new_chunks["chunk_id"])
    assert store.write_manifest(NOW) != version


@pytest.mark.slow
def test_search_ranks_by_cosine_and_filters_by_product(tmp_path):
    store = KnowledgeStore(tmp_path / "vectors")
    _sync(store, DOCS)
    question = default_embedder().embed(["kidney toxicity of cisplatin"])[0]
    hits = store.search(ABSTRACT_CHUNKS, question, k=3)
    assert hits["source_id"][0] == "1002"
    assert hits["similarity"].is_sorted(descending=True)
    only = store.search(ABSTRACT_CHUNKS, question, k=3, product="propranolol")
    assert set(only["source_id"]) == {"1001"}


def test_a_vector_dimension_change_is_refused_with_the_table_named(tmp_path):
    store = KnowledgeStore(tmp_path / "vectors")
    chunks = chunk_documents(DOCS.head(1), max_chars=500, overlap=0)
    store.sync_chunks(ABSTRACT_CHUNKS, chunks, np.ones((chunks.height, 4), np.float32), "e4")
    with pytest.raises(DataContractError, match=ABSTRACT_CHUNKS):
        store.sync_chunks(ABSTRACT_CHUNKS, chunks, np.ones((chunks.height, 8), np.float32), "e8")


def _entry(key="q-1", version="idx-1", payload='{"text": "x"}'):
    return {
        "key": key,
        "index_version": version,
        "query_class": "default",
        "kind": "retrieval",
        "payload": payload,
        "checksum": checksum(payload),
        "ttl_seconds": 60,
        "cost_usd": 0.001,
        "created_at": NOW,
    }


def test_warm_cache_round_trip_and_version_drop(tmp_path):
    warm = WarmCache(tmp_path / "lake")
    warm.put(_entry())
    warm.put(_entry(key="q-2", version="idx-2"))
    got = warm.get("q-1", "idx-1")
    assert got is not None and got["payload"] == '{"text": "x"}' and got["created_at"] == NOW
    assert warm.get("q-1", "idx-2") is None
    assert warm.drop_other_versions("idx-2") == 1
    assert warm.get("q-1", "idx-1") is None and warm.get("q-2", "idx-2") is not None


def test_an_unreadable_warm_file_is_reported_absent_then_overwritten(tmp_path):
    warm = WarmCache(tmp_path / "lake")
    path = warm.put(_entry())
    path.write_bytes(path.read_bytes()[:40])
    assert warm.get("q-1", "idx-1") is None
    warm.put(_entry())
    assert warm.get("q-1", "idx-1") is not None


def test_faers_counts_are_the_shipped_tables_in_long_form():
    counts = faers.read_counts(("betablocker500",))
    wide = pl.read_csv(faers.data_dir() / "betablocker500.csv")
    numeric = wide.drop(wide.columns[0])
    assert counts.height == wide.height * numeric.width
    assert counts["n"].sum() == sum(numeric[c].sum() for c in numeric.columns)
    assert "propranolol" in set(counts["drug"]) and "Other" in set(counts["drug"])


def test_a_bad_faers_cell_names_the_table_event_and_drug(tmp_path):
    (tmp_path / "broken.csv").write_text('"","Atenolol","Other"\n"Pain",12,300\n"Rash",-1,200\n')
    with pytest.raises(DataContractError, match=r"record broken:Rash, field Atenolol"):
        faers.read_counts(("broken",), folder=tmp_path)
