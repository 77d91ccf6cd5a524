from datetime import date

import numpy as np
import polars as pl
import pytest

from tasks.errors import ConfigError
from tasks.io.drug_dictionary import product_variants
from tasks.io.vectors import VectorStore


def _rows(ids, hashes):
    return pl.DataFrame(
        {
            "id": ids,
            "content_hash": hashes,
            "title": ["t"] * len(ids),
            "pub_date": [date(2021, 1, 1)] * len(ids),
            "products": [["aspirin"]] * len(ids),
        }
    )


def test_upsert_is_idempotent_and_vectors_are_reused_only_for_the_same_content(tmp_path):
    store = VectorStore(tmp_path)
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    store.upsert(_rows(["1", "2", "3"], ["a", "b", "c"]), vectors, "e")
    store.upsert(_rows(["1", "2", "3"], ["a", "b", "c"]), vectors, "e")
    assert store.count() == 3
    found = store.cached_vectors(["1", "2", "3", "4"], ["a", "changed", "c", "d"], "e")
    assert sorted(found) == ["1", "3"]
    np.testing.assert_allclose(found["3"], vectors[2])
    assert store.cached_vectors(["1"], ["a"], "another-embedder") == {}


def test_the_cache_lookup_searches_the_id_index_and_sees_rows_not_yet_indexed(tmp_path):
    """A chunk's lookup costs the same however many vectors are stored: an index search."""
    store = VectorStore(tmp_path)
    rng = np.random.default_rng(1)
    ids = [str(i) for i in range(2000)]
    store.upsert(_rows(ids, ["h"] * 2000), rng.normal(size=(2000, 8)).astype(np.float32), "e")
    later = rng.normal(size=(2, 8)).astype(np.float32)
    store.upsert(_rows(["new-1", "new-2"], ["h", "h"]), later, "e")  # not in the index yet
    assert "ScalarIndexQuery" in store.lookup_plan(["7", "new-1"])
    found = store.cached_vectors(["7", "new-1", "absent"], ["h", "h", "h"], "e")
    assert sorted(found) == ["7", "new-1"]
    np.testing.assert_allclose(found["new-1"], later[0])
    store.optimize()
    assert sorted(store.cached_vectors(["new-2", "1999"], ["h", "h"], "e")) == ["1999", "new-2"]


def test_dimension_mismatch_is_refused(tmp_path):
    store = VectorStore(tmp_path)
    store.upsert(_rows(["1"], ["a"]), np.zeros((1, 8), dtype=np.float32), "e")
    with pytest.raises(ValueError, match="8-d"):
        store.upsert(_rows(["2"], ["b"]), np.zeros((1, 4), dtype=np.float32), "e")


def test_dictionary_gives_brand_names_and_refuses_unknown_products():
    variants = product_variants(["propranolol"])
    assert {"dociton", "propranolol hydrochloride"} <= set(variants["propranolol"])
    with pytest.raises(ConfigError, match="Coumadin"):
        product_variants(["Coumadin"])


def _upsert_as_another_writer(root, writer, start, calls):
    store = VectorStore(root)  # its own connection, as in another Dask worker process
    start.wait()  # every writer meets the new, empty store at once: creation and index race
    for call in range(calls):
        ids = [f"{writer}-{call}-{k}" for k in range(4)]
        store.upsert(_rows(ids, ["h"] * 4), np.full((4, 8), writer, np.float32), "e")


def test_concurrent_writers_upserting_disjoint_ids_lose_nothing(tmp_path):
    """The scan's chunks on Dask workers: one table created, one id index, every row kept.

    Writers are threads with their own connections: LanceDB commits through the files either
    way, and threads meet at the barrier within microseconds (spawned processes would not).
    """
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    writers, calls = 4, 5
    start = Barrier(writers)
    with ThreadPoolExecutor(writers) as pool:
        jobs = [
            pool.submit(_upsert_as_another_writer, tmp_path, w, start, calls)
            for w in range(writers)
        ]
        for job in jobs:
            job.result(timeout=120)
    store = VectorStore(tmp_path)
    assert store.count() == writers * calls * 4
    ids = [f"{w}-{c}-{k}" for w in range(writers) for c in range(calls) for k in range(4)]
    found = store.cached_vectors(ids, ["h"] * len(ids), "e")
    assert sorted(found) == sorted(ids)
    assert all(found[i][0] == float(i.split("-")[0]) for i in ids)
    assert "ScalarIndexQuery" in store.lookup_plan(ids[:3])


def _optimize_as_another_scan(root, start, times):
    store = VectorStore(root)  # a backfill window finishing on another Dask worker
    start.wait()
    for _ in range(times):
        store.optimize()


def test_optimize_while_other_writers_upsert_and_optimize_is_retried_not_failed(tmp_path):
    """Backfill windows on Dask workers: one window's optimize meets another's upserts, index
    creation and optimize; a preempted compaction ("Retryable commit conflict") is retried.
    Before the retry, 2 writers and 2 optimizers here failed 9 of 24 optimizes."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    VectorStore(tmp_path).upsert(_rows(["seed"], ["h"]), np.zeros((1, 8), np.float32), "e")
    start = Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(_upsert_as_another_writer, tmp_path, w, start, 8) for w in range(2)]
        jobs += [pool.submit(_optimize_as_another_scan, tmp_path, start, 8) for _ in range(2)]
        for job in jobs:
            job.result(timeout=120)
    assert VectorStore(tmp_path).count() == 1 + 2 * 8 * 4
