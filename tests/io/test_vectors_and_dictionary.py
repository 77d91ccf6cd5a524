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
