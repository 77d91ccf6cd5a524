"""The key index of one lake dataset: which keys it holds, looked up without reading the lake.

``root/.keys/<dataset>--<keys>.sqlite`` beside the lake, used only under the dataset's
``flock`` (see ``Lake.locked``). It is a cache of the Parquet files, never the truth: it records
each folder's mtime and each file's name and inode, and ``sync`` re-lists only the folders whose
mtime moved (every write in the lake is a rename, which moves its folder's mtime and gives the
name a new inode), re-indexes the files that are new or replaced and forgets the removed ones.
A process killed between a Parquet rename and the index commit, a writer that bypasses
``append_new``, a deleted index: the next ``sync`` catches up, so the index can lag the files
but never answer "absent" for a key a file holds. A folder whose mtime is younger than the
clock's granularity (``_RACY_NS``) could still change within the same tick unseen, so it is
recorded as unknown and re-listed next time (git's "racy timestamp" rule).

Why: the already-decided check and ``append_new`` used to read every key of the dataset per
block, so memory and time grew with the history. A lookup here reads only the block's keys
(a primary-key search), and ``sync`` stats the folders, not the files.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from tasks.io.sqlite_wal import stored_values

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    folder   TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    file_id INTEGER PRIMARY KEY,
    folder  TEXT NOT NULL,
    name    TEXT NOT NULL,
    inode   INTEGER NOT NULL,
    UNIQUE (folder, name)
);
CREATE TABLE IF NOT EXISTS keys (
    key     TEXT NOT NULL,
    file_id INTEGER NOT NULL,
    PRIMARY KEY (key, file_id)
) WITHOUT ROWID;
"""
_NULL = "\x00"  # a null key part: distinct from every string, equal to another null
_SEPARATOR = "\x1f"


def stored_keys(con: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the index's ``keys`` table holds."""
    return stored_values(con, "keys", "key", keys)


_RACY_NS = 50_000_000  # folder mtimes younger than this may still change unseen in one tick
_UNKNOWN = -1  # a folder mtime that never matches: re-list the folder at the next sync


def encoded(frame: pl.DataFrame, keys: Sequence[str]) -> pl.Series:
    """One text key per row: the key columns as strings, joined (nulls equal to each other)."""
    parts = [pl.col(k).cast(pl.String).fill_null(_NULL) for k in keys]
    return frame.select(pl.concat_str(parts, separator=_SEPARATOR).alias("key"))["key"]


class KeyIndex:
    """The indexed keys of the dataset in ``folder``; ``path`` is the SQLite file.

    Counters for tests and benchmarks: ``files_indexed`` (files added to the index),
    ``files_read`` (of those, the ones read from disk rather than recorded from memory) and
    ``keys_returned`` (index rows a lookup returned).
    """

    def __init__(self, path: Path, folder: Path, keys: Sequence[str]):
        self.path, self.folder, self.keys = path, folder, list(keys)
        self.files_indexed = 0
        self.files_read = 0
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
        """Catch up with every folder whose mtime moved since the last sync (see module doc)."""
        on_disk = _folders(self.folder)
        with self._connection() as con:
            known = dict(con.execute("SELECT folder, mtime_ns FROM folders").fetchall())
            moved = [f for f, mtime in on_disk.items() if known.get(f) != mtime]
            gone = [f for f in known if f not in on_disk]
            if not moved and not gone:
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                for folder in gone:
                    self._forget(con, folder, names=None)
                    con.execute("DELETE FROM folders WHERE folder = ?", (folder,))
                for folder in moved:
                    self._relist(con, folder, on_disk[folder])
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _relist(self, con: sqlite3.Connection, folder: str, mtime_ns: int) -> None:
        listed = {
            entry.name: entry.inode()
            for entry in os.scandir(self.folder / folder)
            if entry.name.endswith(".parquet") and entry.is_file()
        }
        stored = {
            name: inode
            for name, inode in con.execute(
                "SELECT name, inode FROM files WHERE folder = ?", (folder,)
            ).fetchall()
        }
        self._forget(con, folder, names=[n for n, i in stored.items() if listed.get(n) != i])
        for name, inode in listed.items():
            if stored.get(name) != inode:
                self._add(con, folder, name, inode, self._read_keys(folder, name))
        racy = time.time_ns() - mtime_ns < _RACY_NS
        con.execute(
            "INSERT OR REPLACE INTO folders (folder, mtime_ns) VALUES (?, ?)",
            (folder, _UNKNOWN if racy else mtime_ns),
        )

    def _forget(self, con: sqlite3.Connection, folder: str, names: list[str] | None) -> None:
        """Drop the files (all of ``folder`` when ``names`` is None) and their keys."""
        if names is None:
            rows = con.execute("SELECT file_id FROM files WHERE folder = ?", (folder,))
        else:
            marks = ", ".join("?" * len(names))
            rows = con.execute(
                f"SELECT file_id FROM files WHERE folder = ? AND name IN ({marks})",  # noqa: S608
                (folder, *names),
            )
        for (file_id,) in rows.fetchall():
            con.execute("DELETE FROM keys WHERE file_id = ?", (file_id,))
            con.execute("DELETE FROM files WHERE file_id = ?", (file_id,))

    def _add(
        self, con: sqlite3.Connection, folder: str, name: str, inode: int, frame: pl.DataFrame
    ) -> None:
        cursor = con.execute(
            "INSERT OR REPLACE INTO files (folder, name, inode) VALUES (?, ?, ?)",
            (folder, name, inode),
        )
        file_id = cursor.lastrowid
        con.executemany(
            "INSERT OR IGNORE INTO keys (key, file_id) VALUES (?, ?)",
            ((key, file_id) for key in encoded(frame, self.keys).unique().to_list()),
        )
        self.files_indexed += 1

    def keys_in(self, frame: pl.DataFrame) -> list[str]:
        return [k for k in self.keys if k in frame.columns]

    def _read_keys(self, folder: str, name: str) -> pl.DataFrame:
        path = self.folder / folder / name
        in_path = [part.split("=", 1)[0] for part in Path(folder).parts if "=" in part]
        names = set(pq.read_schema(path).names)
        stored = [k for k in self.keys if k in names and k not in in_path]
        if stored:
            frame = pl.from_arrow(pq.read_table(path, columns=stored))
            assert isinstance(frame, pl.DataFrame)
        else:  # every key is in the path: one key for the whole file (if it has rows)
            frame = pl.DataFrame(height=min(1, pq.read_metadata(path).num_rows))
        self.files_read += 1
        return self._with_path_keys(frame, folder)

    def _with_path_keys(self, frame: pl.DataFrame, folder: str) -> pl.DataFrame:
        """A partition key lives in the path, not the file; a key no file has is null."""
        in_path = dict(part.split("=", 1) for part in Path(folder).parts if "=" in part)
        return frame.with_columns(
            pl.lit(in_path.get(k), pl.String).alias(k) for k in self.keys if k not in frame.columns
        )

    def record(self, written: dict[Path, pl.DataFrame]) -> None:
        """Index files this process just wrote from their rows in memory, not by reading them.

        Their folders keep their recorded mtime, so a folder another writer touched meanwhile
        is still re-listed by the next sync.
        """
        if not written:
            return
        with self._connection() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                for path, rows in written.items():
                    folder = path.parent.relative_to(self.folder).as_posix()
                    self._forget(con, folder, names=[path.name])
                    keyed = self._with_path_keys(rows.select(self.keys_in(rows)), folder)
                    self._add(con, folder, path.name, path.stat().st_ino, keyed)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def present(self, frame: pl.DataFrame) -> pl.Series:
        """For each row of ``frame``: is its key in the dataset (as of the last ``sync``)?"""
        wanted = encoded(frame, self.keys)
        with self._connection() as con:
            found = stored_keys(con, wanted.unique().to_list())
        self.keys_returned += len(found)
        return wanted.is_in(list(found))

    def plan(self) -> str:
        """SQLite's plan for a lookup: a primary-key SEARCH, never a SCAN of every key."""
        with self._connection() as con:
            rows = con.execute(
                "EXPLAIN QUERY PLAN SELECT DISTINCT key FROM keys WHERE key IN (?, ?)", ("a", "b")
            ).fetchall()
        return " | ".join(str(row[-1]) for row in rows)


def _folders(root: Path) -> dict[str, int]:
    """Every folder below ``root`` (``.`` itself) with its mtime in nanoseconds.

    A folder whose link count is 2 has no subfolder (POSIX filesystems count ``.`` and each
    child's ``..``), so a partition folder full of files is stat-ed, never listed.
    """
    if not root.is_dir():
        return {}
    found, pending = {}, [root]
    while pending:
        folder = pending.pop()
        info = folder.stat()
        found[folder.relative_to(root).as_posix()] = info.st_mtime_ns
        if info.st_nlink != 2:
            pending.extend(Path(e.path) for e in os.scandir(folder) if e.is_dir())
    return found
