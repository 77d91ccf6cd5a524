"""The review inbox: every item a human must decide, one SQLite file under PHARMALANE_HOME.

Invariants:

* an item is added once: ``add`` is keyed by item id (``INSERT OR IGNORE``), so filling the
  inbox again after every scan, escalation or triage run adds nothing twice and never reopens
  a resolved item;
* the first resolution wins: ``resolve`` reads and updates the row inside one ``BEGIN
  IMMEDIATE`` transaction, so of two reviewers (two processes, the API and the CLI) exactly
  one resolves the item; the other gets ``AlreadyResolved`` and nothing changes;
* an item is handed to one review run (the Prefect UI form) once: ``unscheduled`` lists the
  open items no review run was started for, ``mark_scheduled`` records the run, whichever
  path (lane, API listing) added the item;
* evidence (abstract, narrative reference, verdicts) is stored sealed with the data key
  (``tasks/io/sealing.py``); the file and its -wal/-shm are readable by their owner only.
  Clock, status and outcome are codes and stay in the clear, so listing needs no key.

``InboxStore`` is the interface; ``SqliteInbox`` is the embedded store, ``PostgresInbox``
(``tasks/io/inbox_pg.py``, with ``PHARMALANE_DATABASE_URL``) the one every host shares.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from tasks.errors import AlreadyResolved, DataContractError
from tasks.io.private_files import private_sqlite
from tasks.io.sealing import Sealer
from tasks.io.sqlite_wal import durable_connection, enable_wal, stored_values
from tasks.schemas import InboxItem

_DDL = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    day_zero TEXT NOT NULL,
    clock_days INTEGER NOT NULL,
    due_date TEXT NOT NULL,
    priority INTEGER NOT NULL,
    evidence BLOB NOT NULL,
    added_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    outcome TEXT,
    reviewer TEXT,
    reason_sha256 TEXT,
    resolved_at TEXT
);
CREATE INDEX IF NOT EXISTS items_open ON items (status, due_date, priority);
CREATE INDEX IF NOT EXISTS items_source ON items (source_id);
CREATE TABLE IF NOT EXISTS review_runs (
    item_id TEXT PRIMARY KEY,
    flow_run_id TEXT NOT NULL,
    started_at TEXT NOT NULL
);
"""
ORDER_ITEMS = " ORDER BY due_date, priority, item_id"
SELECT_ITEMS = (
    "SELECT item_id, kind, source_id, source, reason, day_zero, clock_days, due_date, priority,"
    " evidence, status, outcome, reviewer, reason_sha256, resolved_at FROM items"
)
_BY_STATUS = SELECT_ITEMS + " WHERE status = ?" + ORDER_ITEMS
_BY_REF = SELECT_ITEMS + " WHERE item_id = ? OR source_id = ? ORDER BY item_id = ? DESC"


class InboxStore(Protocol):
    """What the inbox needs from its database: a SQLite file or PostgreSQL."""

    def add(self, items: Sequence[InboxItem], *, now: datetime) -> int: ...

    def known(self, item_ids: Sequence[str]) -> set[str]: ...

    def items(self, *, status: str | None = "open") -> list[InboxItem]: ...

    def count(self, *, status: str = "open") -> int: ...

    def find(self, ref: str) -> InboxItem | None: ...

    def resolve(
        self, item_id: str, *, outcome: str, reviewer: str, reason_sha256: str, at: datetime
    ) -> InboxItem: ...

    def unscheduled(self) -> list[str]: ...

    def mark_scheduled(
        self, item_ids: Sequence[str], *, flow_run_id: str, at: datetime
    ) -> None: ...
    def withdraw(self, item_ids: Sequence[str], *, by: str, at: datetime) -> list[str]: ...


class SqliteInbox:
    """The inbox in one SQLite file (WAL, synchronous=FULL), safe across threads and processes.

    Args:
        path: the SQLite file (created 0600 in a 0700 folder).
        sealer: seals and opens the evidence (``sealer_for(settings)``).
    """

    def __init__(self, path: Path, sealer: Sealer):
        self.path, self.sealer = path, sealer
        private_sqlite(path)
        with self._connect() as con:
            enable_wal(con)
            con.executescript(_DDL)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return durable_connection(self.path)

    def add(self, items: Sequence[InboxItem], *, now: datetime) -> int:
        """Add items not yet in the inbox (by item id); return how many were new."""
        rows = [
            (
                i.item_id,
                i.kind,
                i.source_id,
                i.source,
                i.reason,
                i.day_zero.isoformat(),
                i.clock_days,
                i.due_date.isoformat(),
                i.priority,
                self._seal(i),
                now.isoformat(),
            )
            for i in items
        ]
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO items (item_id, kind, source_id, source, reason, day_zero,"
                " clock_days, due_date, priority, evidence, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = con.total_changes - before
            con.execute("COMMIT")
        return added

    def known(self, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` the inbox holds, open or resolved (nothing is unsealed)."""
        with self._connect() as con:
            return stored_values(con, "items", "item_id", sorted(set(item_ids)))

    def items(self, *, status: str | None = "open") -> list[InboxItem]:
        """Items with ``status`` (None: all), earliest due date first, then priority."""
        with self._connect() as con:
            if status:
                rows = con.execute(_BY_STATUS, (status,)).fetchall()
            else:
                rows = con.execute(SELECT_ITEMS + ORDER_ITEMS).fetchall()
        return [self._item(r) for r in rows]

    def count(self, *, status: str = "open") -> int:
        """How many items have ``status`` (nothing is unsealed)."""
        with self._connect() as con:
            row = con.execute("SELECT count(*) FROM items WHERE status = ?", (status,)).fetchone()
        return int(row[0])

    def find(self, ref: str) -> InboxItem | None:
        """The item whose id is ``ref``, or whose source id is ``ref`` when only one is.

        Raises:
            DataContractError: ``ref`` is the source id of items of several kinds.
        """
        with self._connect() as con:
            rows = con.execute(_BY_REF, (ref, ref, ref)).fetchall()
        if not rows:
            return None
        if rows[0][0] != ref and len(rows) > 1:
            kinds = ", ".join(f"{r[1]}:{ref}" for r in rows)
            raise DataContractError(f"{ref} names several items: use one of {kinds}", field="id")
        return self._item(rows[0])

    def resolve(
        self, item_id: str, *, outcome: str, reviewer: str, reason_sha256: str, at: datetime
    ) -> InboxItem:
        """Resolve an open item; the first resolution wins.

        Raises:
            DataContractError: unknown item (field ``item_id``).
            AlreadyResolved: the item was resolved before; nothing changed.
        """
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute(
                "SELECT status, outcome, reviewer FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            if row is None:
                con.execute("ROLLBACK")
                raise DataContractError(f"no inbox item {item_id}", field="item_id")
            if row[0] != "open":
                con.execute("ROLLBACK")
                raise AlreadyResolved(
                    f"already resolved ({row[1]} by {row[2]}): the first resolution stands",
                    record=item_id,
                    field="status",
                )
            con.execute(
                "UPDATE items SET status = 'resolved', outcome = ?, reviewer = ?,"
                " reason_sha256 = ?, resolved_at = ? WHERE item_id = ?",
                (outcome, reviewer, reason_sha256, at.isoformat(), item_id),
            )
            con.execute("COMMIT")
        resolved = self.find(item_id)
        assert resolved is not None
        return resolved

    def unscheduled(self) -> list[str]:
        """Open items no review run was started for, most urgent first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT item_id FROM items WHERE status = 'open' AND item_id NOT IN"
                " (SELECT item_id FROM review_runs) ORDER BY priority, due_date, item_id"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def mark_scheduled(self, item_ids: Sequence[str], *, flow_run_id: str, at: datetime) -> None:
        """Record that ``flow_run_id`` reviews ``item_ids`` (an item keeps its first run)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR IGNORE INTO review_runs (item_id, flow_run_id, started_at)"
                " VALUES (?, ?, ?)",
                [(i, flow_run_id, at.isoformat()) for i in item_ids],
            )
            con.execute("COMMIT")

    def withdraw(self, item_ids: Sequence[str], *, by: str, at: datetime) -> list[str]:
        """Close the open items among ``item_ids`` as ``withdrawn`` (kept, never deleted).

        The source withdrew the record (NLM deleted the citation): nobody must review it any
        more. A resolved item keeps its resolution. Returns the ids closed now.
        """
        closed: list[str] = []
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            for item_id in item_ids:
                cursor = con.execute(
                    "UPDATE items SET status = 'withdrawn', outcome = 'withdrawn', reviewer = ?,"
                    " resolved_at = ? WHERE item_id = ? AND status = 'open'",
                    (by, at.isoformat(), item_id),
                )
                if cursor.rowcount:
                    closed.append(item_id)
            con.execute("COMMIT")
        return closed

    def _seal(self, item: InboxItem) -> bytes:
        return seal_evidence(self.sealer, item)

    def _item(self, row: tuple[Any, ...]) -> InboxItem:
        return item_of_row(self.sealer, row)


def seal_evidence(sealer: Sealer, item: InboxItem) -> bytes:
    """The item's evidence, sealed with the data key (as both stores keep it)."""
    return sealer.seal(json.dumps(item.evidence, sort_keys=True, default=str).encode())


def item_of_row(sealer: Sealer, row: tuple[Any, ...]) -> InboxItem:
    """An item from a row of ``SELECT_ITEMS`` (dates as ISO text, evidence sealed)."""
    evidence = json.loads(sealer.open(bytes(row[9]), record=row[0]))
    return InboxItem(
        item_id=row[0],
        kind=row[1],
        source_id=row[2],
        source=row[3],
        reason=row[4],
        day_zero=date.fromisoformat(row[5]),
        clock_days=int(row[6]),
        due_date=date.fromisoformat(row[7]),
        priority=int(row[8]),
        evidence=evidence,
        status=row[10],
        outcome=row[11],
        reviewer=row[12],
        reason_sha256=row[13],
        resolved_at=datetime.fromisoformat(row[14]) if row[14] else None,
    )
