"""The lake on an S3-compatible object store: write-then-commit, since there is no rename.

Layout below the lake's prefix::

    <dataset>/<partition>=<value>/<stem>.<write id>.parquet   data objects
    _commits/<dataset>/<seq, 12 digits>.json                  commits, numbered from 1

A data object is never read unless a commit names it. A write puts its data objects under
names no other write uses, then publishes one small commit object with a conditional put
(``If-None-Match: *``) at the dataset's next sequence number: of two writers that race for a
number, exactly one gets it, the other learns so and retries at the next. Each commit maps
slots (``<partition>=<value>/<stem>``, the local lake's file names) to the objects that hold
them, so a later commit replaces a slot as ``os.replace`` replaced a file. Readers fold the
commits in order and read only the objects they name.

So a run killed after its data objects and before its commit leaves objects nobody reads, and
the resumed run writes its rows again under fresh names and commits once: no partial dataset
is ever visible, no row twice. ``append_new`` checks its rows' keys against every commit up to
the number it then claims; losing the race means another commit may hold some of those keys,
so it checks them again before trying the next number. The key lookup is a local SQLite index
under ``PHARMALANE_HOME`` (``CommitKeys``), caught up commit by commit.

Reports: DuckDB scans the committed objects as pyarrow datasets on pyarrow's S3 filesystem
(projection and filters pushed into the scan), one view per dataset, as ``Lake.query`` does
with ``read_parquet`` on disk.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from tasks.io.lake import cast_to, frame_of
from tasks.io.lake_keys import encoded, stored_keys
from tasks.io.object_store import Bucket

COMMITS = "_commits"
_COMMIT_ATTEMPTS = 20  # commit numbers lost to other writers before giving up


@dataclass(frozen=True)
class Commit:
    """One published write: its number and the objects it puts in its slots."""

    seq: int
    slots: dict[str, str]  # slot -> object path below the dataset
    schemas: dict[str, str]  # slot -> Arrow schema of the object (IPC, base64)


class ObjectLake:
    """Parquet datasets below ``bucket``'s prefix, published by numbered commits.

    Args:
        bucket: the bucket; its access's prefix is the lake's root.
        index_dir: a local folder for the key indexes (one SQLite file per dataset and keys).
    """

    def __init__(self, bucket: Bucket, index_dir: Path):
        self.bucket = bucket
        self.prefix = bucket.access.prefix.strip("/")
        self.index_dir = index_dir
        self._fs = bucket.access.arrow_fs()
        self._commits: dict[str, dict[int, Commit]] = {}
        self._lock = threading.Lock()  # one lake per process, shared by its threads

    @property
    def root(self) -> str:
        return self.bucket.access.uri

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _arrow_path(self, dataset: str, name: str) -> str:
        return f"{self.bucket.access.bucket}/{self._key(dataset, name)}"

    def read_object(self, dataset: str, path: str, columns: Sequence[str]) -> pl.DataFrame:
        """The ``columns`` of one data object that it has (the others are left out)."""
        where = self._arrow_path(dataset, path)
        stored = set(pq.read_schema(where, filesystem=self._fs).names)
        table = pq.read_table(
            where, columns=[c for c in columns if c in stored], filesystem=self._fs
        )
        return frame_of(table)

    def commits(self, dataset: str) -> list[Commit]:
        """Every commit of ``dataset`` in order (each object fetched once per process)."""
        with self._lock:
            cached = self._commits.setdefault(dataset, {})
            folder = self._key(COMMITS, dataset) + "/"
            # commits are immutable and numbered: list only those after the newest one known
            after = f"{folder}{max(cached):012d}.json" if cached else ""
            for key in self.bucket.keys(folder, after=after):
                number = key[len(folder) :].removesuffix(".json")
                if not number.isdigit() or int(number) in cached:
                    continue  # a nested dataset's commits, or a stranger
                body = json.loads(self.bucket.get(key))
                cached[int(number)] = Commit(int(number), body["slots"], body["schemas"])
            return [cached[s] for s in sorted(cached)]

    def _visible(self, dataset: str) -> dict[str, tuple[str, str]]:
        """slot -> (object path, schema) after folding every commit in order."""
        slots: dict[str, tuple[str, str]] = {}
        for commit in self.commits(dataset):
            for slot, path in commit.slots.items():
                slots[slot] = (path, commit.schemas[slot])
        return slots

    def datasets(self) -> list[str]:
        """Every dataset with a commit, named by its path below the lake's root."""
        folder = self._key(COMMITS) + "/"
        return sorted({k[len(folder) :].rsplit("/", 1)[0] for k in self.bucket.keys(folder)})

    def files(self, dataset: str) -> list[PurePosixPath]:
        """The committed objects of ``dataset``, below the lake's root."""
        return sorted(PurePosixPath(dataset, p) for p, _ in self._visible(dataset).values())

    def _put_parts(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        partition_by: str,
        stem: str,
        write_id: str,
    ) -> dict[str, pa.Table]:
        """Write each partition's rows as a fresh data object; slot -> rows. Nothing visible."""
        table = cast_to(frame, schema, dataset)
        written: dict[str, pa.Table] = {}
        if table.num_rows == 0:
            return written
        part = table.column(partition_by).to_pylist()
        body = table.drop_columns([partition_by])
        for value in sorted({str(v) for v in part}):
            slot = f"{partition_by}={value}/{stem}"
            rows = body.filter(pa.array([str(v) == value for v in part]))
            pq.write_table(
                rows,
                self._arrow_path(dataset, f"{slot}.{write_id}.parquet"),
                filesystem=self._fs,
                compression="zstd",
            )
            written[slot] = rows
        return written

    def _try_commit(
        self, dataset: str, seq: int, written: dict[str, pa.Table], write_id: str
    ) -> bool:
        """Publish ``written`` as commit ``seq``; False if another writer holds that number."""
        body = {
            "slots": {slot: f"{slot}.{write_id}.parquet" for slot in written},
            "schemas": {
                slot: base64.b64encode(rows.schema.serialize().to_pybytes()).decode()
                for slot, rows in written.items()
            },
        }
        key = self._key(COMMITS, dataset, f"{seq:012d}.json")
        return self.bucket.put(key, json.dumps(body, sort_keys=True).encode(), if_absent=True)

    def _discard(self, dataset: str, written: dict[str, pa.Table], write_id: str) -> None:
        self.bucket.delete([self._key(dataset, f"{s}.{write_id}.parquet") for s in written])

    def write(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        *,
        partition_by: str,
        stem: str,
    ) -> list[PurePosixPath]:
        """Write ``frame`` as one object per partition value, replacing the slots of ``stem``."""
        written = self._write_committed(dataset, frame, schema, partition_by, stem, keys=None)
        return [PurePosixPath(dataset, slot) for slot in written]

    def _write_committed(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        partition_by: str,
        stem: str,
        *,
        keys: Sequence[str] | None,
    ) -> dict[str, pa.Table]:
        """Write then commit at the next free number; with ``keys``, re-check them each try."""
        index = self.key_index(dataset, keys) if keys else None
        for _ in range(_COMMIT_ATTEMPTS):
            head = self.commits(dataset)
            seq = head[-1].seq + 1 if head else 1
            if index is not None:
                index.sync(self, dataset)
                frame = frame.filter(~index.present(frame))
            write_id = uuid.uuid4().hex[:16]
            written = self._put_parts(dataset, frame, schema, partition_by, stem, write_id)
            if not written:
                return {}
            if self._try_commit(dataset, seq, written, write_id):
                if index is not None:
                    index.record(seq, {s: frame_of(t) for s, t in written.items()})
                return written
            self._discard(dataset, written, write_id)  # lost the number: nobody reads these
        raise RuntimeError(f"{dataset}: lost {_COMMIT_ATTEMPTS} commit races in a row")

    def append_new(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        *,
        keys: Sequence[str],
        partition_by: str,
        stem: str,
    ) -> int:
        """Write the rows of ``frame`` whose ``keys`` no commit holds yet.

        Returns:
            The number of rows written (0 on a re-run).
        """
        if frame.is_empty():
            return 0
        fresh = frame.unique(subset=list(keys), keep="first", maintain_order=True)
        written = self._write_committed(dataset, fresh, schema, partition_by, stem, keys=keys)
        return sum(t.num_rows for t in written.values())

    def unseen(self, dataset: str, frame: pl.DataFrame, *, keys: Sequence[str]) -> pl.DataFrame:
        """The rows of ``frame`` whose ``keys`` no commit of ``dataset`` holds."""
        if frame.is_empty():
            return frame
        index = self.key_index(dataset, keys)
        index.sync(self, dataset)
        return frame.filter(~index.present(frame))

    def key_index(self, dataset: str, keys: Sequence[str]) -> CommitKeys:
        name = f"{dataset.replace('/', '__')}--{'+'.join(keys)}.sqlite"
        return CommitKeys(self.index_dir / name, keys)

    def arrow_dataset(self, dataset: str) -> pads.Dataset | None:
        """The committed objects of ``dataset`` as one pyarrow dataset (None if none).

        Columns are the union of the objects' columns (a file without one reads it as null),
        partition columns are strings, as the local lake's ``hive_types_autocast = false``.
        """
        visible = self._visible(dataset)
        if not visible:
            return None
        schemas = [
            pa.ipc.read_schema(pa.py_buffer(base64.b64decode(s))) for _, s in visible.values()
        ]
        partitions = [part.split("=", 1)[0] for part in next(iter(visible)).split("/")[:-1]]
        columns = pa.unify_schemas(schemas, promote_options="permissive")
        for name in partitions:
            columns = columns.append(pa.field(name, pa.string()))
        return pads.dataset(
            [self._arrow_path(dataset, path) for path, _ in visible.values()],
            schema=columns,
            format="parquet",
            filesystem=self._fs,
            partitioning=pads.HivePartitioning(
                pa.schema([(n, pa.string()) for n in partitions]), segment_encoding="none"
            ),
            partition_base_dir=f"{self.bucket.access.bucket}/{self._key(dataset)}",
        )

    def read(
        self,
        dataset: str,
        columns: Sequence[str] | None = None,
        *,
        where: str | None = None,
        params: Sequence[object] = (),
    ) -> pl.DataFrame:
        """The rows of a dataset (partition columns as strings); empty if none.

        ``where`` is a SQL condition with parameters ``$2``, ``$3``... as in ``Lake.read``
        (``$1`` is the dataset's location there and here).
        """
        source = self.arrow_dataset(dataset)
        if source is None:
            return pl.DataFrame()
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        with duckdb.connect() as con:
            con.register("dataset", source)
            relation = con.sql(
                f"SELECT {select} FROM dataset WHERE $1::VARCHAR IS NOT NULL"  # noqa: S608
                + (f" AND ({where})" if where else ""),
                params=[f"{self.root}/{dataset}", *params],
            )
            table = relation.to_arrow_table()
        return frame_of(table)

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        """Run SQL in which every dataset is a view of that name (as ``Lake.query``)."""
        with duckdb.connect() as con:
            for name in self.datasets():
                source = self.arrow_dataset(name)
                if source is not None:
                    con.register(name, source)
            relation = con.sql(sql, params=list(params) or None)
            table = relation.to_arrow_table() if relation is not None else pa.table({})
        return frame_of(table)


class CommitKeys:
    """Which keys the commits of one dataset hold, in a local SQLite file (a cache, not truth).

    It records the last commit number indexed and each slot's keys; ``sync`` reads the key
    columns of the objects of newer commits only, so a lookup never lists the whole history.
    A deleted index is rebuilt from the commits.
    """

    def __init__(self, path: Path, keys: Sequence[str]):
        self.path, self.keys = path, list(keys)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.executescript(
                "CREATE TABLE IF NOT EXISTS head (seq INTEGER NOT NULL);"
                "CREATE TABLE IF NOT EXISTS keys (key TEXT NOT NULL, slot TEXT NOT NULL,"
                " PRIMARY KEY (key, slot)) WITHOUT ROWID;"
                "CREATE INDEX IF NOT EXISTS keys_slot ON keys (slot);"
            )
            yield con
        finally:
            con.close()

    @staticmethod
    def _head(con: sqlite3.Connection) -> int:
        row = con.execute("SELECT max(seq) FROM head").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def sync(self, lake: ObjectLake, dataset: str) -> None:
        """Index every commit of ``dataset`` newer than the last one indexed."""
        with self._connection() as con:
            pending = [c for c in lake.commits(dataset) if c.seq > self._head(con)]
            for commit in pending:
                frames = {
                    slot: lake.read_object(dataset, path, self.keys)
                    for slot, path in commit.slots.items()
                }
                self._store(con, commit.seq, frames)

    def record(self, seq: int, frames: dict[str, pl.DataFrame]) -> None:
        """Index this process's own commit ``seq`` from its rows in memory."""
        with self._connection() as con:
            self._store(con, seq, frames)

    def _store(self, con: sqlite3.Connection, seq: int, frames: dict[str, pl.DataFrame]) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            if self._head(con) != seq - 1:  # another process indexed it, or a gap: sync later
                con.execute("ROLLBACK")
                return
            for slot, frame in frames.items():
                con.execute("DELETE FROM keys WHERE slot = ?", (slot,))
                keyed = _with_slot_keys(frame, slot, self.keys)
                con.executemany(
                    "INSERT OR IGNORE INTO keys (key, slot) VALUES (?, ?)",
                    ((k, slot) for k in encoded(keyed, self.keys).unique().to_list()),
                )
            con.execute("DELETE FROM head")
            con.execute("INSERT INTO head (seq) VALUES (?)", (seq,))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def present(self, frame: pl.DataFrame) -> pl.Series:
        """For each row of ``frame``: is its key in the dataset (as of the last ``sync``)?"""
        wanted = encoded(frame, self.keys)
        with self._connection() as con:
            found = stored_keys(con, wanted.unique().to_list())
        return wanted.is_in(list(found))


def _with_slot_keys(frame: pl.DataFrame, slot: str, keys: Sequence[str]) -> pl.DataFrame:
    """A partition key lives in the slot's path, not the object; a key no object has is null."""
    in_path = dict(part.split("=", 1) for part in slot.split("/")[:-1] if "=" in part)
    stored = [k for k in keys if k in frame.columns]
    # every key in the path: one key for the whole object (if it has rows)
    frame = frame.select(stored) if stored else pl.DataFrame(height=min(1, frame.height))
    return frame.with_columns(
        pl.lit(in_path.get(k), pl.String).alias(k) for k in keys if k not in frame.columns
    )
