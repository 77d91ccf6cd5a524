"""LanceDB: the abstract embeddings, and the cache that keeps the small model paid once.

Rows are keyed by ``id`` (the pmid) and carry the ``content_hash`` of the text they embed, so a
vector is reused only for the same content; ``merge_insert`` makes every upsert idempotent.
The vector dimension is declared from the embedder, never assumed. A BTree index on ``id``
makes the per-chunk cache lookup and the upsert's match an index search, not a scan of every
stored vector, so their cost stays flat as the table grows (``optimize`` folds new rows in).

Several processes (the scan's chunks fanned out on Dask workers) upsert disjoint ids into one
table at once. LanceDB retries a ``merge_insert`` that loses a commit race by itself; the two
writes it does not retry are made safe here: the table's creation (``exist_ok``: the second
creator opens the first one's table) and the ``id`` index (a ``CreateIndex`` that loses to
another process's is checked again and retried, so exactly one index is kept). ``optimize``
(compaction and index update, run by each scan after its chunks) is retried the same way when
another process's commit preempts it: two backfill windows on two Dask workers finish at
different times, and one's optimize meets the other's upserts, index creation or optimize.
"""

from __future__ import annotations

import fcntl
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import polars as pl
import pyarrow as pa
from lancedb.index import BTree

from tasks.io.storage import LanceLocation, connect_lance

ABSTRACTS = "abstracts"
_INDEX_ATTEMPTS = 8  # CreateIndex commit races lost before giving up (one per other writer)
_OPTIMIZE_ATTEMPTS = 30  # compactions preempted before giving up (each writer's commit may)
_OPTIMIZE_PAUSE_S = 0.05
_CACHE_BYTES = 64 << 20  # per LanceDB cache (index, metadata) of one store


def abstracts_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("content_hash", pa.string()),
            pa.field("title", pa.string()),
            pa.field("pub_date", pa.date32()),
            pa.field("products", pa.list_(pa.string())),
            pa.field("embedder", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def _escape(text: str) -> str:
    return text.replace("'", "''")


class VectorStore:
    """The LanceDB database below ``root`` (a local folder or an S3 location)."""

    def __init__(self, root: Path | LanceLocation):
        # LanceDB's default caches (GiBs) fill with every version a chunk's upsert creates
        session = lancedb.Session(
            index_cache_size_bytes=_CACHE_BYTES, metadata_cache_size_bytes=_CACHE_BYTES
        )
        self._db: Any = connect_lance(root, session=session)
        local = root if isinstance(root, Path) else root.local
        self._create_lock = None if local is None else local / ".abstracts.create.lock"

    def _has(self, name: str) -> bool:
        token: str | None = None
        while True:
            page = self._db.list_tables(page_token=token)
            if name in page.tables:
                return True
            token = page.page_token
            if not token:
                return False

    def _table(self, dimension: int) -> Any:
        if not self._has(ABSTRACTS):
            self._create(dimension)
        table = self._open_created()
        stored = table.schema.field("vector").type.list_size
        if stored != dimension:
            raise ValueError(
                f"LanceDB table {ABSTRACTS} holds {stored}-d vectors, the embedder makes "
                f"{dimension}-d: re-index into a new PHARMALANE_HOME"
            )
        return table

    def _create(self, dimension: int) -> None:
        """Create the table once, whoever else is creating it.

        Two creates committing at the same moment are not refused by LanceDB: the loser's is
        rebased into an Overwrite of the winner's table, which wipes rows already upserted
        and fails the winner's next write. On a local folder creators take an exclusive file
        lock and look again under it; on S3 the loser's conditional put fails and it opens
        the winner's table.
        """
        if self._create_lock is None:
            try:
                self._db.create_table(ABSTRACTS, schema=abstracts_schema(dimension), mode="create")
            except (ValueError, RuntimeError, OSError):
                if not self._has(ABSTRACTS):
                    raise
            return
        with self._create_lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not self._has(ABSTRACTS):
                self._db.create_table(ABSTRACTS, schema=abstracts_schema(dimension), mode="create")

    def _open_created(self) -> Any:
        """Open the table, waiting briefly for another creator's first commit to land."""
        for attempt in range(_OPTIMIZE_ATTEMPTS):
            try:
                return self._db.open_table(ABSTRACTS)
            except ValueError:  # listed (its folder exists) but its first version not committed
                if attempt == _OPTIMIZE_ATTEMPTS - 1:
                    raise
                time.sleep(_OPTIMIZE_PAUSE_S)
        raise AssertionError("unreachable")

    def count(self) -> int:
        if not self._has(ABSTRACTS):
            return 0
        return int(self._db.open_table(ABSTRACTS).count_rows())

    def upsert(self, rows: pl.DataFrame, vectors: np.ndarray, embedder: str) -> int:
        """Insert or update ``rows`` (id, content_hash, title, pub_date, products) by id."""
        if rows.is_empty():
            return 0
        dimension = int(vectors.shape[1])
        table = self._table(dimension)
        data = rows.select("id", "content_hash", "title", "pub_date", "products").to_arrow()
        data = data.append_column("embedder", pa.array([embedder] * rows.height))
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        data = data.append_column("vector", pa.FixedSizeListArray.from_arrays(flat, dimension))
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data.cast(abstracts_schema(dimension)))
        )
        _ensure_id_index(table)
        return rows.height

    def cached_vectors(
        self, ids: Sequence[str], content_hashes: Sequence[str], embedder: str
    ) -> dict[str, np.ndarray]:
        """Vectors already paid for: id -> vector, where the stored content hash still matches."""
        if not ids or not self._has(ABSTRACTS):
            return {}
        table = self._db.open_table(ABSTRACTS)
        wanted = dict(zip(ids, content_hashes, strict=True))
        found: dict[str, np.ndarray] = {}
        id_list = list(wanted)
        for start in range(0, len(id_list), 1000):
            batch = id_list[start : start + 1000]
            where = "id IN (" + ", ".join(f"'{_escape(i)}'" for i in batch) + ")"
            where += f" AND embedder = '{_escape(embedder)}'"
            hits = (
                table.search()
                .where(where)
                .select(["id", "content_hash", "vector"])
                .limit(len(batch))
                .to_arrow()
            )
            for row_id, row_hash, vector in zip(
                hits.column("id").to_pylist(),
                hits.column("content_hash").to_pylist(),
                hits.column("vector").to_numpy(zero_copy_only=False),
                strict=True,
            ):
                if wanted.get(row_id) == row_hash:
                    found[row_id] = np.asarray(vector, dtype=np.float32)
        return found

    def lookup_plan(self, ids: Sequence[str]) -> str:
        """LanceDB's plan for the cache lookup of ``ids`` (tests check it uses the index)."""
        if not self._has(ABSTRACTS):
            return ""
        where = "id IN (" + ", ".join(f"'{_escape(i)}'" for i in ids) + ")"
        query = self._db.open_table(ABSTRACTS).search().where(where).select(["id"])
        return str(query.limit(len(ids)).explain_plan(True))

    def optimize(self) -> None:
        """Compact the table and fold new rows into its index; retried after a lost race.

        Raises:
            RuntimeError: another writer's commit preempted every attempt.
        """
        if not self._has(ABSTRACTS):
            return
        table = self._db.open_table(ABSTRACTS)
        for attempt in range(_OPTIMIZE_ATTEMPTS):
            try:
                table.optimize()
                return
            except RuntimeError as exc:
                if "Retryable commit conflict" not in str(exc) or attempt == _OPTIMIZE_ATTEMPTS - 1:
                    raise
                # a jittered pause, so two optimizers that keep preempting each other part ways
                time.sleep(random.uniform(0, _OPTIMIZE_PAUSE_S * (attempt + 1)))  # noqa: S311
                table.checkout_latest()  # start again from the commit that won


def _ensure_id_index(table: Any) -> None:
    """The BTree index on ``id``, created once even when several processes try at once."""
    for _ in range(_INDEX_ATTEMPTS):
        if any(index.columns == ["id"] for index in table.list_indices()):
            return
        try:
            table.create_index("id", config=BTree())
            return
        except RuntimeError as exc:
            if "Retryable commit conflict" not in str(exc):
                raise
            table.checkout_latest()  # the winner's commit: is it the index we wanted?
    raise RuntimeError(f"LanceDB table {ABSTRACTS}: the id index lost {_INDEX_ATTEMPTS} races")
