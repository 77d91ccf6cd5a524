"""Where each literature source stopped, and when each item was first seen (one SQLite file).

Invariants:
- A watermark names the last unit of a source that is fetched *and decided* (for
  ``pubmed-query``, per product query: the last entry date; for update files, the last file).
  It is written only after the scan decided every item of that unit, and it only moves forward
  (``MAX`` in one statement), so a killed run leaves it where it was and a later run starts
  right after it: no gap, and no window fetched by two runs that both finished.
- ``first_seen_at`` of an item is written once (``INSERT OR IGNORE``): a re-fetch, a revised
  record or a re-run keeps the first time the company retrieved it (day 0 of a literature case).

``LiteratureMarks`` is the interface: ``LiteratureState`` here (SQLite under PHARMALANE_HOME)
or ``PostgresLiteratureState`` (literature_state_pg.py), chosen by ``PHARMALANE_DATABASE_URL``
(``tasks/io/shared_state.open_literature_state``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from tasks.io.sqlite_wal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    source     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE TABLE IF NOT EXISTS first_seen (
    item_id       TEXT PRIMARY KEY,
    first_seen_at TEXT NOT NULL
);
"""
_BATCH = 500  # ids per statement: SQLite's variable limit is 999 on old builds


class LiteratureMarks(Protocol):
    """What the literature scans need from a database: watermarks and first-seen times."""

    def watermark(self, source: str, key: str) -> str | None: ...

    def advance(self, source: str, key: str, value: str, now: datetime) -> str: ...

    def known(self, item_ids: Sequence[str]) -> set[str]: ...

    def first_seen(self, item_ids: Sequence[str], now: datetime) -> dict[str, datetime]: ...


class LiteratureState:
    """Watermarks per (source, key) and first-seen times per item id."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as con:
            enable_wal(con)
            con.executescript(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        finally:
            con.close()

    def watermark(self, source: str, key: str) -> str | None:
        """The last decided unit of ``source``/``key``, or None before the first one."""
        with self._connection() as con:
            row = con.execute(
                "SELECT value FROM watermarks WHERE source = ? AND key = ?", (source, key)
            ).fetchone()
        return str(row[0]) if row else None

    def advance(self, source: str, key: str, value: str, now: datetime) -> str:
        """Move the watermark to ``value`` unless it is already past it; returns where it is.

        Values compare as text: ISO dates and NLM's update file names both sort in time order.
        """
        with self._connection() as con:
            con.execute(
                "INSERT INTO watermarks (source, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (source, key) DO UPDATE SET "
                "value = MAX(value, excluded.value), updated_at = excluded.updated_at",
                (source, key, value, now.astimezone(UTC).isoformat()),
            )
        return self.watermark(source, key) or value

    def known(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` retrieved before (they have a first-seen time)."""
        out: set[str] = set()
        with self._connection() as con:
            for start in range(0, len(item_ids), _BATCH):
                ids = list(item_ids[start : start + _BATCH])
                marks = ",".join("?" * len(ids))
                rows = con.execute(
                    f"SELECT item_id FROM first_seen WHERE item_id IN ({marks})",  # noqa: S608
                    ids,
                ).fetchall()
                out.update(str(r[0]) for r in rows)
        return out

    def first_seen(self, item_ids: Sequence[str], now: datetime) -> dict[str, datetime]:
        """Record ``now`` for ids never seen before; the first-seen time of every id."""
        stamp = now.astimezone(UTC).isoformat()
        out: dict[str, datetime] = {}
        with self._connection() as con:
            con.execute("BEGIN IMMEDIATE")
            for start in range(0, len(item_ids), _BATCH):
                ids = list(item_ids[start : start + _BATCH])
                con.executemany(
                    "INSERT OR IGNORE INTO first_seen (item_id, first_seen_at) VALUES (?, ?)",
                    [(i, stamp) for i in ids],
                )
                marks = ",".join("?" * len(ids))
                rows = con.execute(
                    f"SELECT item_id, first_seen_at FROM first_seen WHERE item_id IN ({marks})",  # noqa: S608
                    ids,
                ).fetchall()
                out.update((str(i), datetime.fromisoformat(str(t))) for i, t in rows)
            con.execute("COMMIT")
        return out
