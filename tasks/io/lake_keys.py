"""The key index of one lake dataset: which keys it holds, looked up without reading the lake.

``root/.keys/<dataset>.sqlite`` beside the lake, used only under the dataset's ``flock`` (see
``Lake.locked``). It is a cache of the Parquet files, never the truth: it records each file it
indexed with its size and mtime, and ``sync`` first re-indexes any file that is new or changed
and forgets any file that is gone. A process killed between a Parquet rename and the index
commit, a writer that bypasses ``append_new``, a deleted index: the next ``sync`` catches up,
so the index can lag the files but never answer "absent" for a key a file holds.

Why: the already-decided check and ``append_new`` used to read every key of the dataset per
block, so memory and time grew with the history. A lookup here reads only the block's keys
(a primary-key search), and ``sync`` reads only the files written since the last one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_id  INTEGER PRIMARY KEY,
    path     TEXT NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key     TEXT NOT NULL,
    file_id INTEGER NOT NULL,
    PRIMARY KEY (key, file_id)
) WITHOUT ROWID;
"""
_NULL = "\x00"  # a null key part: distinct from every string, equal to another null
_SEPARATOR = "\x1f"
_LOOKUP_BATCH = 500  # keys per IN list (SQLite's variable limit is far above)


def encoded(frame: pl.DataFrame, keys: Sequence[str]) -> pl.Series:
    """One text key per row: the key columns as strings, joined (nulls equal to each other)."""
    parts = [pl.col(k).cast(pl.String).fill_null(_NULL) for k in keys]
    return frame.select(pl.concat_str(parts, separator=_SEPARATOR).alias("key"))["key"]


class KeyIndex:
    """The indexed keys of the dataset in ``folder``; ``path`` is the SQLite file.

    Counters for tests and benchmarks: ``files_indexed`` (Parquet files read by ``sync``) and
    ``keys_returned`` (index rows a lookup returned).
    """

    def __init__(self, path: Path, folder: Path, keys: Sequence[str]):
        self.path, self.folder, self.keys = path, folder, list(keys)
        self.files_indexed = 0
        self.keys_returned = 0

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    def sync(self) -> None:
        """Index every file that is new or changed since the last sync; forget removed files."""
        on_disk = {
            p.relative_to(self.folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in (self.folder.rglob("*.parquet") if self.folder.is_dir() else ())
        }
        with self._connection() as con:
            stored = {
                row[0]: (int(row[1]), (int(row[2]), int(row[3])))
                for row in con.execute("SELECT path, file_id, size, mtime_ns FROM files")
            }
            stale = [fid for path, (fid, sig) in stored.items() if on_disk.get(path) != sig]
            fresh = [p for p, sig in on_disk.items() if p not in stored or stored[p][1] != sig]
            if not stale and not fresh:
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                for file_id in stale:
                    con.execute("DELETE FROM keys WHERE file_id = ?", (file_id,))
                    con.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
                for relative in fresh:
                    self._index_file(con, relative, on_disk[relative])
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _index_file(self, con: sqlite3.Connection, relative: str, sig: tuple[int, int]) -> None:
        path = self.folder / relative
        in_path = dict(part.split("=", 1) for part in Path(relative).parent.parts if "=" in part)
        names = set(pq.read_schema(path).names)
        stored = [k for k in self.keys if k in names and k not in in_path]
        if stored:
            frame = pl.from_arrow(pq.read_table(path, columns=stored))
            assert isinstance(frame, pl.DataFrame)
        else:  # every key is in the path: one key for the whole file (if it has rows)
            frame = pl.DataFrame(height=min(1, pq.read_metadata(path).num_rows))
        frame = frame.with_columns(  # a partition key lives in the path; an absent one is null
            pl.lit(in_path.get(k), pl.String).alias(k) for k in self.keys if k not in stored
        )
        cursor = con.execute(
            "INSERT INTO files (path, size, mtime_ns) VALUES (?, ?, ?)", (relative, *sig)
        )
        file_id = cursor.lastrowid
        con.executemany(
            "INSERT OR IGNORE INTO keys (key, file_id) VALUES (?, ?)",
            ((key, file_id) for key in encoded(frame, self.keys).unique().to_list()),
        )
        self.files_indexed += 1

    def present(self, frame: pl.DataFrame) -> pl.Series:
        """For each row of ``frame``: is its key in the dataset (as of the last ``sync``)?"""
        wanted = encoded(frame, self.keys)
        distinct = wanted.unique().to_list()
        found: set[str] = set()
        with self._connection() as con:
            for start in range(0, len(distinct), _LOOKUP_BATCH):
                batch = distinct[start : start + _LOOKUP_BATCH]
                marks = ", ".join("?" * len(batch))
                rows = con.execute(
                    f"SELECT DISTINCT key FROM keys WHERE key IN ({marks})",  # noqa: S608
                    batch,
                ).fetchall()
                found.update(row[0] for row in rows)
        self.keys_returned += len(found)
        return wanted.is_in(list(found))

    def plan(self) -> str:
        """SQLite's plan for a lookup: a primary-key SEARCH, never a SCAN of every key."""
        with self._connection() as con:
            rows = con.execute(
                "EXPLAIN QUERY PLAN SELECT DISTINCT key FROM keys WHERE key IN (?, ?)", ("a", "b")
            ).fetchall()
        return " | ".join(str(row[-1]) for row in rows)
