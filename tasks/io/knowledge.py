"""LanceDB tables of the knowledge layer: chunks to retrieve from, and the semantic cache.

``abstract_chunks`` and ``reference_chunks`` hold chunk text with its embedding, upserted by
``chunk_id`` (content-derived) so re-indexing the same text changes nothing; chunks of a source
that are no longer produced are deleted. The index version is a hash of every chunk id, written
to a small manifest beside the tables: a cache entry carries the version it was computed on.
``semantic_cache`` holds question embeddings with the entities they name and a payload checksum.
The vector dimension is declared from the embedder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.errors import DataContractError
from tasks.io.storage import LanceLocation, connect_lance

ABSTRACT_CHUNKS = "abstract_chunks"
REFERENCE_CHUNKS = "reference_chunks"
SEMANTIC_CACHE = "semantic_cache"
CHUNK_TABLES = (ABSTRACT_CHUNKS, REFERENCE_CHUNKS)
MANIFEST = "knowledge_index.json"
TS = pa.timestamp("us", tz="UTC")


def chunks_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string()),
            pa.field("source_id", pa.string()),
            pa.field("section", pa.string()),
            pa.field("ordinal", pa.int64()),
            pa.field("text", pa.string()),
            pa.field("products", pa.list_(pa.string())),
            pa.field("pub_date", pa.date32()),
            pa.field("embedder", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def cache_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("key", pa.string()),
            pa.field("query", pa.string()),
            pa.field("product", pa.string()),
            pa.field("drugs", pa.list_(pa.string())),
            pa.field("reactions", pa.list_(pa.string())),
            pa.field("index_version", pa.string()),
            pa.field("query_class", pa.string()),
            pa.field("ttl_seconds", pa.int64()),
            pa.field("kind", pa.string()),
            pa.field("payload", pa.string()),
            pa.field("checksum", pa.string()),
            pa.field("cost_usd", pa.float64()),
            pa.field("created_at", TS),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def _escape(text: str) -> str:
    return text.replace("'", "''")


def _vector_column(vectors: np.ndarray, dimension: int) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, dimension)


class KnowledgeStore:
    """The knowledge tables in the LanceDB database below ``root`` (a folder or S3 location)."""

    def __init__(self, root: Path | LanceLocation):
        self.root = root if isinstance(root, LanceLocation) else LanceLocation(str(root))
        self._db: Any = connect_lance(self.root)

    def _names(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:
            page = self._db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def _open(self, name: str, schema: pa.Schema) -> Any:
        dimension = schema.field("vector").type.list_size
        if name in self._names():
            table = self._db.open_table(name)
            stored = table.schema.field("vector").type.list_size
            if stored != dimension:
                raise DataContractError(
                    f"holds {stored}-d vectors, the embedder makes {dimension}-d: "
                    "run `pharmalane index --rebuild`",
                    record=name,
                    field="vector",
                )
            return table
        return self._db.create_table(name, schema=schema)

    def count(self, name: str) -> int:
        return int(self._db.open_table(name).count_rows()) if name in self._names() else 0

    # --- chunks -------------------------------------------------------------------------------

    def sync_chunks(
        self, name: str, chunks: pl.DataFrame, vectors: np.ndarray, embedder: str
    ) -> int:
        """Make ``name`` hold exactly ``chunks`` for their sources: upsert new, delete stale.

        Returns:
            Chunks inserted (0 when the same text is indexed again).
        """
        if chunks.is_empty():
            return 0
        dimension = int(vectors.shape[1])
        schema = chunks_schema(dimension)
        table = self._open(name, schema)
        known = self.chunk_ids(name, chunks["source_id"].unique().to_list())
        fresh_mask = ~chunks["chunk_id"].is_in(list(known))
        fresh = chunks.filter(fresh_mask)
        if fresh.height:
            data = fresh.select(
                "chunk_id", "source_id", "section", "ordinal", "text", "products", "pub_date"
            ).to_arrow()
            data = data.append_column("embedder", pa.array([embedder] * fresh.height))
            data = data.append_column(
                "vector", _vector_column(vectors[fresh_mask.to_numpy()], dimension)
            )
            (
                table.merge_insert("chunk_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data.cast(schema))
            )
        stale = sorted(known - set(chunks["chunk_id"].to_list()))
        for start in range(0, len(stale), 500):
            batch = stale[start : start + 500]
            table.delete("chunk_id IN (" + ", ".join(f"'{_escape(c)}'" for c in batch) + ")")
        return fresh.height

    def chunk_ids(self, name: str, source_ids: Sequence[str] | None = None) -> set[str]:
        """Chunk ids stored in ``name`` (for ``source_ids`` only, when given)."""
        if name not in self._names():
            return set()
        query = self._db.open_table(name).search().select(["chunk_id"])
        if source_ids is not None:
            if not source_ids:
                return set()
            ids = ", ".join(f"'{_escape(s)}'" for s in source_ids)
            query = query.where(f"source_id IN ({ids})")
        return set(query.limit(None).to_arrow().column("chunk_id").to_pylist())

    def search(
        self, name: str, vector: np.ndarray, *, k: int, product: str | None = None
    ) -> pl.DataFrame:
        """The ``k`` nearest chunks by cosine similarity (column ``similarity``)."""
        if name not in self._names():
            return pl.DataFrame()
        query = self._db.open_table(name).search(vector.astype(np.float32)).distance_type("cosine")
        if product:
            query = query.where(f"array_has_any(products, ['{_escape(product.lower())}'])")
        hits = (
            query.limit(k)
            .select(
                ["chunk_id", "source_id", "section", "text", "products", "pub_date", "_distance"]
            )
            .to_arrow()
        )
        frame = pl.from_arrow(hits)
        assert isinstance(frame, pl.DataFrame)
        return frame.with_columns((1 - pl.col("_distance")).alias("similarity")).drop("_distance")

    def ensure_ann_index(self, name: str, min_rows: int) -> bool:
        """Build an IVF-PQ index only when the table is large enough to need one."""
        rows = self.count(name)
        if rows < min_rows:
            return False
        self._db.open_table(name).create_index(
            metric="cosine", vector_column_name="vector", replace=True
        )
        return True

    # --- index version ------------------------------------------------------------------------

    def write_manifest(self, now: datetime) -> str:
        """Hash every chunk id into the index version and record it; returns the version."""
        ids = sorted(set().union(*(self.chunk_ids(t) for t in CHUNK_TABLES)))
        version = "idx-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        manifest = {
            "version": version,
            "chunks": {t: self.count(t) for t in CHUNK_TABLES},
            "built_at": now.isoformat(),
        }
        self.root.write_text(MANIFEST, json.dumps(manifest, indent=2))
        return version

    def index_version(self) -> str | None:
        text = self.root.read_text(MANIFEST)
        if text is None:
            return None
        try:
            return str(json.loads(text)["version"])
        except (ValueError, KeyError):
            return None

    # --- semantic cache -----------------------------------------------------------------------

    def cache_put(self, entry: dict[str, Any], vector: np.ndarray) -> None:
        dimension = int(vector.shape[0])
        schema = cache_schema(dimension)
        table = self._open(SEMANTIC_CACHE, schema)
        data = pa.Table.from_pylist([entry]).select([n for n in schema.names if n != "vector"])
        data = data.append_column("vector", _vector_column(vector[None, :], dimension))
        (
            table.merge_insert("key")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data.cast(schema))
        )

    def cache_nearest(self, vector: np.ndarray, *, k: int, index_version: str) -> pl.DataFrame:
        """Nearest cached questions on this index version (column ``similarity``)."""
        if SEMANTIC_CACHE not in self._names():
            return pl.DataFrame()
        hits = (
            self._db.open_table(SEMANTIC_CACHE)
            .search(vector.astype(np.float32))
            .distance_type("cosine")
            .where(f"index_version = '{_escape(index_version)}'")
            .limit(k)
            .to_arrow()
            .drop_columns(["vector"])
        )
        frame = pl.from_arrow(hits)
        assert isinstance(frame, pl.DataFrame)
        return frame.with_columns((1 - pl.col("_distance")).alias("similarity")).drop("_distance")

    def cache_drop_other_versions(self, index_version: str) -> None:
        """Invalidation: entries computed on any other index version are deleted."""
        if SEMANTIC_CACHE in self._names():
            self._db.open_table(SEMANTIC_CACHE).delete(
                f"index_version != '{_escape(index_version)}'"
            )

    def cache_delete(self, key: str) -> None:
        if SEMANTIC_CACHE in self._names():
            self._db.open_table(SEMANTIC_CACHE).delete(f"key = '{_escape(key)}'")
