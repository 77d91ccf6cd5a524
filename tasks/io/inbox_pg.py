"""The review inbox on PostgreSQL: one inbox for the API replicas, lanes and CLIs of every host.

The invariants of ``tasks/io/inbox.py`` hold the same way: ``add`` is keyed by item id (``ON
CONFLICT DO NOTHING``), so nothing is added twice or reopened; ``resolve`` locks the item's row
(``SELECT ... FOR UPDATE``), so of two reviewers exactly one resolves it; an item keeps its
first review run. Evidence is sealed with the data key before it leaves the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tasks.errors import AlreadyResolved, DataContractError
from tasks.io.inbox import ORDER_ITEMS, SELECT_ITEMS, item_of_row, seal_evidence
from tasks.io.postgres import shared_pool
from tasks.io.sealing import Sealer
from tasks.schemas import InboxItem

_INSERT = (
    "INSERT INTO items (item_id, kind, source_id, source, reason, day_zero, clock_days,"
    " due_date, priority, evidence, added_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)


class PostgresInbox:
    """The inbox in the database at ``url``; ``sealer`` seals and opens the evidence."""

    def __init__(self, url: str, sealer: Sealer):
        self.sealer = sealer
        self._pool = shared_pool(url)

    def add(self, items: Sequence[InboxItem], *, now: datetime) -> int:
        """Add items not yet in the inbox (by item id); return how many were new."""
        con, added = self._pool.connection(), 0
        with con.transaction():
            for i in items:
                row = (i.item_id, i.kind, i.source_id, i.source, i.reason, i.day_zero.isoformat())
                rest = (i.clock_days, i.due_date.isoformat(), i.priority)
                sealed = seal_evidence(self.sealer, i)
                added += con.execute(_INSERT, (*row, *rest, sealed, now.isoformat())).rowcount
        return added

    def known(self, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` the inbox holds, open or resolved (nothing is unsealed)."""
        rows = (
            self._pool.connection()
            .execute("SELECT item_id FROM items WHERE item_id = ANY(%s)", (list(item_ids),))
            .fetchall()
        )
        return {str(r[0]) for r in rows}

    def items(self, *, status: str | None = "open") -> list[InboxItem]:
        """Items with ``status`` (None: all), earliest due date first, then priority."""
        con = self._pool.connection()
        if status:
            rows = con.execute(
                (SELECT_ITEMS + " WHERE status = %s" + ORDER_ITEMS).encode(), (status,)
            ).fetchall()
        else:
            rows = con.execute((SELECT_ITEMS + ORDER_ITEMS).encode()).fetchall()
        return [item_of_row(self.sealer, r) for r in rows]

    def count(self, *, status: str = "open") -> int:
        """How many items have ``status`` (nothing is unsealed)."""
        row = (
            self._pool.connection()
            .execute("SELECT count(*) FROM items WHERE status = %s", (status,))
            .fetchone()
        )
        assert row is not None
        return int(row[0])

    def find(self, ref: str) -> InboxItem | None:
        """The item whose id is ``ref``, or whose source id is ``ref`` when only one is.

        Raises:
            DataContractError: ``ref`` is the source id of items of several kinds.
        """
        query = SELECT_ITEMS + " WHERE item_id = %s OR source_id = %s ORDER BY item_id = %s DESC"
        rows = self._pool.connection().execute(query.encode(), (ref, ref, ref)).fetchall()
        if not rows:
            return None
        if rows[0][0] != ref and len(rows) > 1:
            kinds = ", ".join(f"{r[1]}:{ref}" for r in rows)
            raise DataContractError(f"{ref} names several items: use one of {kinds}", field="id")
        return item_of_row(self.sealer, rows[0])

    def resolve(
        self, item_id: str, *, outcome: str, reviewer: str, reason_sha256: str, at: datetime
    ) -> InboxItem:
        """Resolve an open item; the first resolution wins.

        Raises:
            DataContractError: unknown item (field ``item_id``).
            AlreadyResolved: the item was resolved before; nothing changed.
        """
        con = self._pool.connection()
        with con.transaction():
            row = con.execute(
                "SELECT status, outcome, reviewer FROM items WHERE item_id = %s FOR UPDATE",
                (item_id,),
            ).fetchone()
            if row is None:
                raise DataContractError(f"no inbox item {item_id}", field="item_id")
            if row[0] != "open":
                raise AlreadyResolved(
                    f"already resolved ({row[1]} by {row[2]}): the first resolution stands",
                    record=item_id,
                    field="status",
                )
            con.execute(
                "UPDATE items SET status = 'resolved', outcome = %s, reviewer = %s,"
                " reason_sha256 = %s, resolved_at = %s WHERE item_id = %s",
                (outcome, reviewer, reason_sha256, at.isoformat(), item_id),
            )
        resolved = self.find(item_id)
        assert resolved is not None
        return resolved

    def unscheduled(self) -> list[str]:
        """Open items no review run was started for, most urgent first."""
        rows = (
            self._pool.connection()
            .execute(
                "SELECT item_id FROM items WHERE status = 'open' AND item_id NOT IN"
                " (SELECT item_id FROM review_runs) ORDER BY priority, due_date, item_id"
            )
            .fetchall()
        )
        return [str(r[0]) for r in rows]

    def mark_scheduled(self, item_ids: Sequence[str], *, flow_run_id: str, at: datetime) -> None:
        """Record that ``flow_run_id`` reviews ``item_ids`` (an item keeps its first run)."""
        con = self._pool.connection()
        with con.transaction():
            for item_id in item_ids:
                con.execute(
                    "INSERT INTO review_runs (item_id, flow_run_id, started_at)"
                    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (item_id, flow_run_id, at.isoformat()),
                )

    def withdraw(self, item_ids: Sequence[str], *, by: str, at: datetime) -> list[str]:
        """Close the open items among ``item_ids`` as ``withdrawn`` (kept, never deleted)."""
        closed: list[str] = []
        con = self._pool.connection()
        with con.transaction():
            for item_id in item_ids:
                cursor = con.execute(
                    "UPDATE items SET status = 'withdrawn', outcome = 'withdrawn', reviewer = %s,"
                    " resolved_at = %s WHERE item_id = %s AND status = 'open'",
                    (by, at.isoformat(), item_id),
                )
                if cursor.rowcount:
                    closed.append(item_id)
        return closed

    def close(self) -> None:
        self._pool.close()
