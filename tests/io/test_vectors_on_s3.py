"""LanceDB on the local S3-compatible server (moto): the vectors and the knowledge manifest."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier

import numpy as np

from tasks.io.knowledge import MANIFEST, KnowledgeStore
from tasks.io.object_store import Bucket
from tasks.io.storage import vectors_location
from tasks.io.vectors import VectorStore
from tasks.settings import load_settings
from tests.io.test_vectors_and_dictionary import _rows


def test_vectors_on_s3_are_upserted_once_found_by_index_and_kept_in_the_bucket(tmp_path, s3_env):
    location = vectors_location(load_settings(home=tmp_path))
    assert location.uri == s3_env["PHARMALANE_LAKE_URI"] + "/vectors"
    store = VectorStore(location)
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    store.upsert(_rows(["1", "2", "3"], ["a", "b", "c"]), vectors, "e")
    store.upsert(_rows(["1", "2", "3"], ["a", "b", "c"]), vectors, "e")
    again = VectorStore(location)  # another process's connection
    assert again.count() == 3
    found = again.cached_vectors(["1", "2", "3"], ["a", "changed", "c"], "e")
    assert sorted(found) == ["1", "3"]
    np.testing.assert_allclose(found["3"], vectors[2])
    assert location.access is not None
    stored = Bucket(location.access).keys(location.access.prefix + "/abstracts.lance/")
    assert any("/_versions/" in key for key in stored)
    assert not (tmp_path / "vectors").exists()  # nothing under home


def _writer(location, writer: int, start: Barrier) -> None:
    store = VectorStore(location)
    start.wait()  # every writer meets the new, empty table at once
    for call in range(3):
        ids = [f"{writer}-{call}-{k}" for k in range(4)]
        store.upsert(_rows(ids, ["h"] * 4), np.full((4, 8), writer, np.float32), "e")


def test_concurrent_writers_on_s3_lose_nothing(tmp_path, s3_env):
    """Dask workers on several hosts: LanceDB commits each version with a conditional put."""
    location = vectors_location(load_settings(home=tmp_path))
    start = Barrier(3)
    with ThreadPoolExecutor(3) as pool:
        for job in [pool.submit(_writer, location, w, start) for w in range(3)]:
            job.result(timeout=120)
    ids = [f"{w}-{c}-{k}" for w in range(3) for c in range(3) for k in range(4)]
    store = VectorStore(location)
    assert store.count() == len(ids)
    assert sorted(store.cached_vectors(ids, ["h"] * len(ids), "e")) == sorted(ids)


def test_the_knowledge_manifest_is_one_object_beside_the_tables(tmp_path, s3_env):
    location = vectors_location(load_settings(home=tmp_path))
    store = KnowledgeStore(location)
    assert store.index_version() is None
    version = store.write_manifest(datetime(2026, 12, 1, tzinfo=UTC))
    assert KnowledgeStore(location).index_version() == version
    assert location.access is not None
    assert Bucket(location.access).keys(f"{location.access.prefix}/{MANIFEST}")
