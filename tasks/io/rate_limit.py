"""Request token buckets shared by every intake process on one PHARMALANE_HOME (one SQLite file).

Invariant: over any minute, one bucket grants at most ``per_minute`` requests (plus the full
bucket it starts with), however many server processes answer and however often they restart.
Each take is one ``BEGIN IMMEDIATE`` read-modify-write, as in ``tasks/io/budget.py``: SQLite
takes its write lock before the read, so two processes can never both spend the last token.
A bucket left alone for a minute is full again, so its row is pruned and nothing else is lost.
``claim`` is the paced variant (one token, no burst) for clients that wait their turn.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Protocol

from tasks.io.private_files import private_sqlite
from tasks.io.sqlite_wal import enable_wal, kept_connection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS request_buckets (
    bucket     TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS request_buckets_age ON request_buckets (updated_at);
"""
_REFILL_SECONDS = 60.0  # an empty bucket is full again after this long


class RateBuckets(Protocol):
    """Request token buckets: the embedded ``RequestBuckets`` (one SQLite file per home) or
    ``PostgresRequestBuckets`` (one database for every replica on every host)."""

    def wait(self, bucket: str, per_minute: int, now: float) -> float: ...

    def take(self, bucket: str, per_minute: int, now: float) -> float: ...

    def claim(self, bucket: str, per_second: float, now: float) -> float: ...

    def close(self) -> None: ...


class RequestBuckets:
    """Token buckets of ``per_minute`` requests, refilled continuously, keyed by a name."""

    def __init__(self, path: Path):
        self.path = path
        self._connections: dict[tuple[int, int], sqlite3.Connection] = {}
        private_sqlite(path)  # key ids and client addresses: owner-only like the case store
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            enable_wal(con)
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def _connection(self) -> sqlite3.Connection:
        # kept open: the check runs on every request
        return kept_connection(self._connections, self.path, timeout=30)

    def wait(self, bucket: str, per_minute: int, now: float) -> float:
        """Seconds until ``bucket`` has a token (0.0: one is free); takes nothing."""
        row = (
            self._connection()
            .execute("SELECT tokens, updated_at FROM request_buckets WHERE bucket = ?", (bucket,))
            .fetchone()
        )
        tokens, _ = refilled(row, per_minute, now)
        return seconds_to_one(tokens, per_minute)

    def take(self, bucket: str, per_minute: int, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is free (nothing taken).

        Args:
            bucket: what is limited, e.g. ``key:<key_id>`` or ``addr:<client address>``.
            per_minute: the bucket's size and refill per minute.
            now: wall-clock seconds (``time.time()``): comparable across processes.
        """
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute(
                "SELECT tokens, updated_at FROM request_buckets WHERE bucket = ?", (bucket,)
            ).fetchone()
            if row is None:
                con.execute(
                    "DELETE FROM request_buckets WHERE updated_at < ?", (now - _REFILL_SECONDS,)
                )
            left, stamp, wait = take_one(row, per_minute, now)
            con.execute(
                "INSERT OR REPLACE INTO request_buckets (bucket, tokens, updated_at)"
                " VALUES (?, ?, ?)",
                (bucket, left, stamp),
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return wait

    def claim(self, bucket: str, per_second: float, now: float) -> float:
        """Take the bucket's one token: 0.0 if granted, else the seconds until it is back.

        For a client that paces itself rather than being refused (the NCBI E-utilities client
        sleeps the answer and claims again): the bucket holds one token at most, refilled at
        ``per_second``, so grants are ``1 / per_second`` apart across every process on the file
        and never come in a burst. A grant is made when the caller is ready to send, not booked
        ahead: a caller that wakes late does not push the next one closer to it.

        Args:
            bucket: who shares the rate, e.g. ``ncbi:key:<digest>``.
            per_second: the grants per second across all processes.
            now: wall-clock seconds (``time.time()``): comparable across processes.
        """
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute(
                "SELECT tokens, updated_at FROM request_buckets WHERE bucket = ?", (bucket,)
            ).fetchone()
            left, stamp, wait = paced_claim(row, per_second, now)
            con.execute(
                "INSERT OR REPLACE INTO request_buckets (bucket, tokens, updated_at)"
                " VALUES (?, ?, ?)",
                (bucket, left, stamp),
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return wait

    def close(self) -> None:
        for con in self._connections.values():
            con.close()
        self._connections.clear()


def take_one(
    row: tuple[float, float] | None, per_minute: int, now: float
) -> tuple[float, float, float]:
    """(tokens to store, stamp to store, seconds to wait) of one take; 0.0 wait: granted."""
    tokens, stamp = refilled(row, per_minute, now)
    wait = seconds_to_one(tokens, per_minute)
    return (tokens - 1.0 if wait == 0.0 else tokens), stamp, wait


def paced_claim(
    row: tuple[float, float] | None, per_second: float, now: float
) -> tuple[float, float, float]:
    """(tokens to store, stamp to store, seconds to wait) of one ``claim``: one token at most."""
    tokens, stamp = (1.0, now) if row is None else (float(row[0]), float(row[1]))
    tokens = min(1.0, tokens + max(0.0, now - stamp) * per_second)
    granted = tokens >= 1.0
    wait = 0.0 if granted else (1.0 - tokens) / per_second
    return (tokens - 1.0 if granted else tokens), max(now, stamp), wait


def refilled(row: tuple[float, float] | None, per_minute: int, now: float) -> tuple[float, float]:
    """Tokens at ``now`` and the stamp to store; a clock that steps back refills nothing."""
    if row is None:
        return float(per_minute), now
    tokens, last = float(row[0]), float(row[1])
    elapsed = max(0.0, now - last)
    return min(float(per_minute), tokens + elapsed * per_minute / _REFILL_SECONDS), max(now, last)


def seconds_to_one(tokens: float, per_minute: int) -> float:
    return 0.0 if tokens >= 1.0 else (1.0 - tokens) * _REFILL_SECONDS / per_minute


def retry_after(wait_seconds: float) -> int:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_seconds))
