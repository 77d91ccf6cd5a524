"""Literature watermarks and first-seen times on PostgreSQL: one state for every host's scans.

The invariants of ``tasks/io/literature_state.py`` hold the same way: a watermark only moves
forward (``GREATEST`` in one upsert, values compared bytewise), and an item's first-seen time
is written once (``ON CONFLICT DO NOTHING``), whichever host retrieved it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tasks.io.postgres import shared_pool


class PostgresLiteratureState:
    """Watermarks per (source, key) and first-seen times per item id, in the database at ``url``."""

    def __init__(self, url: str):
        self._pool = shared_pool(url)

    def watermark(self, source: str, key: str) -> str | None:
        """The last decided unit of ``source``/``key``, or None before the first one."""
        row = (
            self._pool.connection()
            .execute(
                "SELECT value FROM literature_watermarks WHERE source = %s AND key = %s",
                (source, key),
            )
            .fetchone()
        )
        return str(row[0]) if row else None

    def advance(self, source: str, key: str, value: str, now: datetime) -> str:
        """Move the watermark to ``value`` unless it is already past it; returns where it is."""
        con = self._pool.connection()
        with con.transaction():
            row = con.execute(
                "INSERT INTO literature_watermarks (source, key, value, updated_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (source, key) DO UPDATE SET"
                " value = GREATEST(literature_watermarks.value, excluded.value),"
                " updated_at = excluded.updated_at RETURNING value",
                (source, key, value, now.astimezone(UTC).isoformat()),
            ).fetchone()
        return str(row[0]) if row else value

    def known(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among ``item_ids`` retrieved before (they have a first-seen time)."""
        rows = (
            self._pool.connection()
            .execute(
                "SELECT item_id FROM literature_first_seen WHERE item_id = ANY(%s)",
                (list(item_ids),),
            )
            .fetchall()
        )
        return {str(r[0]) for r in rows}

    def first_seen(self, item_ids: Sequence[str], now: datetime) -> dict[str, datetime]:
        """Record ``now`` for ids never seen before; the first-seen time of every id."""
        stamp, ids = now.astimezone(UTC).isoformat(), list(item_ids)
        con = self._pool.connection()
        with con.transaction():
            con.execute(
                "INSERT INTO literature_first_seen (item_id, first_seen_at)"
                " SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
                (ids, stamp),
            )
            rows = con.execute(
                "SELECT item_id, first_seen_at FROM literature_first_seen WHERE item_id = ANY(%s)",
                (ids,),
            ).fetchall()
        return {str(i): datetime.fromisoformat(str(t)) for i, t in rows}

    def close(self) -> None:
        self._pool.close()
