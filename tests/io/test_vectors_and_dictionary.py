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
