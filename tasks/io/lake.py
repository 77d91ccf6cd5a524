"""The lake: hive-partitioned Parquet under one root, written atomically, read with DuckDB.

Every write goes to a temp name that does not end in ``.parquet`` and is renamed into place, so
a reader (or a run killed mid-write) never sees half a file. ``append_new`` is the idempotent
write used by every dataset: rows whose key is already in the lake are not written again, so a
re-run or a resumed run adds nothing twice. Its read-then-write holds an exclusive ``flock`` on
``root/.locks/<dataset>.lock``, so two processes appending overlapping keys to one dataset write
each key once (without it, two lanes duplicated thousands of keys). Which keys are already
there comes from the dataset's key index (``tasks/io/lake_keys.py``), a lookup of the new
rows' keys only: an append costs the same however long the history is.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Protocol

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import DataContractError
from tasks.io.lake_keys import KeyIndex


def cast_to(frame: pl.DataFrame, schema: pa.Schema, dataset: str) -> pa.Table:
    """``frame`` as Arrow in ``schema`` (optional columns filled with nulls), or why not."""
    optional = [f.name for f in schema if f.metadata and b"optional" in f.metadata]
    frame = frame.with_columns(pl.lit(None).alias(c) for c in optional if c not in frame.columns)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise DataContractError(f"{dataset}: missing columns {missing}", field=missing[0])
    table = frame.select(schema.names).to_arrow()
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise DataContractError(f"{dataset}: rows do not fit the schema: {exc}") from exc


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write one Parquet file so that it appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


class LakeStore(Protocol):
    """What the services use of a lake: on local disk (:class:`Lake`) or on an object store
    (``tasks/io/object_lake.py``); the same datasets, keys and SQL either way."""

    def datasets(self) -> list[str]: ...

    def files(self, dataset: str) -> Sequence[PurePath]: ...

    def write(
        self, dataset: str, frame: pl.DataFrame, schema: pa.Schema, *, partition_by: str, stem: str
    ) -> Sequence[PurePath]: ...

    def append_new(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        *,
        keys: Sequence[str],
        partition_by: str,
        stem: str,
    ) -> int: ...

    def unseen(self, dataset: str, frame: pl.DataFrame, *, keys: Sequence[str]) -> pl.DataFrame: ...

    def read(
        self,
        dataset: str,
        columns: Sequence[str] | None = None,
        *,
        where: str | None = None,
        params: Sequence[object] = (),
    ) -> pl.DataFrame: ...

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame: ...


class Lake:
    """Parquet datasets below ``root``: ``root/<dataset>/<partition>=<value>/<stem>.parquet``."""

    def __init__(self, root: Path):
        self.root = root
        self._indexes: dict[tuple[str, tuple[str, ...]], KeyIndex] = {}
        self._schemas: dict[Path, tuple[tuple[int, int, int], str]] = {}  # see _one_schema
        self._schema_texts: dict[str, str] = {}

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    @contextmanager
    def locked(self, dataset: str) -> Iterator[None]:
        """Hold the dataset's exclusive lock (processes and threads) for a read-then-write."""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{dataset.replace('/', '__')}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def key_index(self, dataset: str, keys: Sequence[str]) -> KeyIndex:
        """The key index of ``dataset`` by ``keys`` (use it under :meth:`locked`)."""
        index = self._indexes.get((dataset, tuple(keys)))
        if index is None:
            name = f"{dataset.replace('/', '__')}--{'+'.join(keys)}.sqlite"
            index = KeyIndex(self.root / ".keys" / name, self.dataset_dir(dataset), keys)
            self._indexes[(dataset, tuple(keys))] = index
        return index

    def unseen(self, dataset: str, frame: pl.DataFrame, *, keys: Sequence[str]) -> pl.DataFrame:
        """The rows of ``frame`` whose ``keys`` are not in ``dataset``: a lookup of these keys
        only, never a read of the dataset's history."""
        if frame.is_empty():
            return frame
        with self.locked(dataset):
            index = self.key_index(dataset, keys)
            index.sync()
            return frame.filter(~index.present(frame))

    def datasets(self) -> list[str]:
        """Every dataset with a Parquet file, named by its path below ``root``.

        A dataset is the folder above its first ``key=value`` partition folder, so nested
        datasets (``summaries/product_digest`` by ``pub_month``, ``summaries/product_knowledge``
        by ``kind``) are two datasets, never one glob over differently partitioned files.
        """
        if not self.root.is_dir():
            return []
        found = set()
        for path in self.root.rglob("*.parquet"):
            parts = path.parent.relative_to(self.root).parts
            cut = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
            if cut:
                found.add("/".join(parts[:cut]))
        return sorted(found)

    def files(self, dataset: str) -> list[Path]:
        folder = self.dataset_dir(dataset)
        return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []

    def _read_options(self, dataset: str) -> str:
        """``read_parquet``'s options for ``dataset``: hive partitions as strings, and files read
        by name only when their schemas differ (see ``_one_schema``)."""
        by_name = "false" if self._one_schema(dataset) else "true"
        return f"hive_partitioning = true, hive_types_autocast = false, union_by_name = {by_name}"

    def _one_schema(self, dataset: str) -> bool:
        """Whether every file of ``dataset`` has the same schema (each footer read once).

        Why: DuckDB's ``union_by_name`` (needed only when files of older versions lack newer
        columns) opens every file of the glob up front and keeps ~36 KiB per file, so a query
        over a lake of 8,000 files held 300-800 MiB, growing with the history. Files of one
        schema are read by position, lazily, as DuckDB streams them.
        """
        seen: set[str] = set()
        for path in self.files(dataset):
            try:
                seen.add(self._schema_of(path))
            except FileNotFoundError:  # replaced or removed since it was listed
                return False
            if len(seen) > 1:
                return False
        return True

    def _schema_of(self, path: Path) -> str:
        """The file's schema as text, cached while the file (inode, mtime, size) is unchanged."""
        info = path.stat()
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = self._schemas.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        text = pq.read_schema(path).remove_metadata().to_string(show_field_metadata=False)
        shared = self._schema_texts.setdefault(text, text)  # one copy of each schema's text
        self._schemas[path] = (stamp, shared)
        return shared

    def write(
        self,
        dataset: str,
        frame: pl.DataFrame,
        schema: pa.Schema,
        *,
        partition_by: str,
        stem: str,
    ) -> list[Path]:
        """Write ``frame`` as one file per partition value, replacing files of the same stem.

        The partition column lives in the path, not in the file, as hive readers expect.
        """
        return list(self._write_parts(dataset, frame, schema, partition_by, stem))

    def _write_parts(
        self, dataset: str, frame: pl.DataFrame, schema: pa.Schema, partition_by: str, stem: str
    ) -> dict[Path, pa.Table]:
        """Each file written, with the rows it holds (without the partition column)."""
        table = cast_to(frame, schema, dataset)
        written: dict[Path, pa.Table] = {}
        if table.num_rows == 0:
            return written
        part = table.column(partition_by).to_pylist()
        body = table.drop_columns([partition_by])
        for value in sorted({str(v) for v in part}):
            mask = pa.array([str(v) == value for v in part])
            target = self.dataset_dir(dataset) / f"{partition_by}={value}" / f"{stem}.parquet"
            written[target] = body.filter(mask)
            write_atomic(written[target], target)
        return written

    def read(
        self,
        dataset: str,
        columns: Sequence[str] | None = None,
        *,
        where: str | None = None,
        params: Sequence[object] = (),
    ) -> pl.DataFrame:
        """The rows of a dataset (partition columns restored as strings); empty if none.

        ``where`` is a SQL condition (parameters ``$2``, ``$3``... from ``params``) that DuckDB
        applies while it streams the files: only matching rows are ever held in memory.
        """
        if not self.files(dataset):
            return pl.DataFrame()
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        pattern = str(self.dataset_dir(dataset) / "**" / "*.parquet")
        with _connect() as con:
            relation = con.sql(
                f"SELECT {select} FROM read_parquet($1, {self._read_options(dataset)})"  # noqa: S608
                + (f" WHERE {where}" if where else ""),
                params=[pattern, *params],
            )
            table = relation.to_arrow_table()
        return pl.from_arrow(table)  # type: ignore[return-value]

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
        """Write the rows of ``frame`` whose ``keys`` are not yet in the dataset.

        Returns:
            The number of rows written (0 on a re-run).
        """
        if frame.is_empty():
            return 0
        fresh = frame.unique(subset=list(keys), keep="first", maintain_order=True)
        with self.locked(dataset):
            index = self.key_index(dataset, keys)
            index.sync()
            fresh = fresh.filter(~index.present(fresh))
            written = self._write_parts(dataset, fresh, schema, partition_by, stem)
            # killed before this, the next sync finds the files in their moved folders
            index.record({path: frame_of(rows) for path, rows in written.items()})
        return fresh.height

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        """Run SQL in which every dataset of :meth:`datasets` is a view of that name.

        A nested dataset's view keeps its path: ``SELECT * FROM "summaries/product_digest"``.
        """
        with _connect() as con:
            for name in self.datasets():
                view = _quote(name, '"')
                pattern = str(self.dataset_dir(name) / "**" / "*.parquet")
                con.execute(
                    f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet('  # noqa: S608
                    f"'{_quote(pattern)}', {self._read_options(name)})"
                )
            relation = con.sql(sql, params=list(params) or None)
            table = relation.to_arrow_table() if relation is not None else pa.table({})
        return pl.from_arrow(table)  # type: ignore[return-value]


def _connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that draws no progress bar into the run's log on a long scan."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con


def frame_of(table: pa.Table) -> pl.DataFrame:
    """An Arrow table as a polars frame (never a series)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _quote(text: str, mark: str = "'") -> str:
    return text.replace(mark, mark * 2)
