"""Switching a SQLite file to WAL safely when several threads or processes open it at once.

Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked" at
once (its busy handler does not wait for this) when another connection holds any lock. Two
first opens of a new file, or an open beside a running writer, then fail. The mode is
persistent, so a file already in WAL needs no change: read it first, and retry the switch for
a bounded time.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def enable_wal(con: sqlite3.Connection, *, timeout_seconds: float = 60.0) -> None:
    """Put the database of ``con`` in WAL mode, waiting out other openers.

    Raises:
        sqlite3.OperationalError: the file stayed locked for ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    pause = 0.005
    while True:
        try:
            if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def kept_connection(
    pool: dict[tuple[int, int], sqlite3.Connection], path: Path, *, timeout: float
) -> sqlite3.Connection:
    """One autocommit connection per process and thread, kept open in ``pool``.

    Kept open because closing the last connection to a WAL database checkpoints and fsyncs
    (~10 ms a call). ``synchronous=NORMAL``: a commit survives a crash of the process, not a
    power cut, which is what budgets and rate buckets need.
    """
    key = (os.getpid(), threading.get_ident())
    con = pool.get(key)
    if con is None:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA synchronous=NORMAL")
        pool[key] = con
    return con


@contextmanager
def durable_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """An autocommit connection for a store of record, closed on exit.

    ``synchronous=FULL``: a commit survives a power cut (cases, inbox items, review codes).
    ``secure_delete``: a replaced or deleted row (sealed case text, a code digest) is zeroed on
    disk, not left in a free page. Waits up to 30 s for another writer.
    """
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA secure_delete=ON")
        yield con
    finally:
        con.close()


_LOOKUP_BATCH = 500  # values per IN list: SQLite's variable limit is 999 on old builds


def stored_values(
    con: sqlite3.Connection, table: str, column: str, values: Sequence[str]
) -> set[str]:
    """Which of ``values`` ``table.column`` holds, asked in batches of IN lists.

    ``table`` and ``column`` are the caller's constants, never input.
    """
    found: set[str] = set()
    for start in range(0, len(values), _LOOKUP_BATCH):
        batch = values[start : start + _LOOKUP_BATCH]
        marks = ", ".join("?" * len(batch))
        query = f"SELECT DISTINCT {column} FROM {table} WHERE {column} IN ({marks})"  # noqa: S608
        found.update(row[0] for row in con.execute(query, batch))
    return found
