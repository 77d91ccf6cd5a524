"""The paid-call journal on PostgreSQL: an answer paid on one host is replayed on every host.

Same contract as ``tasks/io/call_journal.py``: committed before ``put`` returns, keyed by the
hash of what was asked, never overwritten (``ON CONFLICT DO NOTHING``), pruned by age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from models.llm import ChatResult
from tasks.io.call_journal import decode_result, encode_result
from tasks.io.postgres import shared_pool


class PostgresCallJournal:
    """Answered calls by key in the ``calls`` table of the database at ``url``."""

    def __init__(self, url: str):
        self._pool = shared_pool(url)

    def get(self, key: str) -> ChatResult | None:
        row = (
            self._pool.connection()
            .execute("SELECT result_json FROM calls WHERE call_key = %s", (key,))
            .fetchone()
        )
        return None if row is None else decode_result(str(row[0]))

    def put(self, key: str, result: ChatResult, now: datetime) -> None:
        """Keep ``result`` (committed before this returns); a key already kept is left as is."""
        self._pool.connection().execute(
            "INSERT INTO calls (call_key, model, result_json, created_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (key, *encode_result(result), now),
        )

    def count(self) -> int:
        row = self._pool.connection().execute("SELECT count(*) FROM calls").fetchone()
        return int(row[0]) if row else 0

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Drop entries older than ``keep``; returns how many."""
        cur = self._pool.connection().execute(
            "DELETE FROM calls WHERE created_at < %s", (now - keep,)
        )
        return int(cur.rowcount)

    def close(self) -> None:
        self._pool.close()
