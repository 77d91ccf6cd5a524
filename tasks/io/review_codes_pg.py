"""Review codes on PostgreSQL: a code issued by one API replica works once on any host.

The invariants of ``tasks/io/review_codes.py`` hold the same way: only the digest is stored;
``redeem`` locks the code's row (``SELECT ... FOR UPDATE``) before it reads and marks it used,
so of several runs redeeming one code at once exactly one gets it; a refused code is left
unspent; the first recorded judgement of a form answer stands (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from datetime import datetime

from tasks.io.postgres import shared_pool
from tasks.io.review_codes import FORGET_AFTER, IssuedCode, issued_of_row, refusal


class PostgresReviewCodes:
    """Review codes in the database at ``url`` (tables ``review_codes``, ``review_attempts``)."""

    def __init__(self, url: str):
        self._pool = shared_pool(url)

    def issue(self, digest: str, code: IssuedCode, *, now: datetime) -> None:
        """Keep a new code's digest; codes lapsed over a day are forgotten on the way."""
        con = self._pool.connection()
        with con.transaction():
            forget = (now - FORGET_AFTER).isoformat()
            con.execute("DELETE FROM review_codes WHERE expires_at < %s", (forget,))
            con.execute(
                "INSERT INTO review_codes (code_sha256, item_id, key_id, role, issued_at,"
                " expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    digest,
                    code.item_id,
                    code.key_id,
                    code.role,
                    now.isoformat(),
                    code.expires_at.isoformat(),
                ),
            )

    def redeem(self, digest: str, *, item_id: str, now: datetime) -> IssuedCode:
        """Spend the code for ``item_id``: it works once, for its item, before it expires.

        Raises:
            PolicyDenied: as ``SqliteReviewCodes.redeem``; the code is left unspent.
        """
        con = self._pool.connection()
        with con.transaction():
            row = con.execute(
                "SELECT item_id, key_id, role, expires_at, used_at FROM review_codes"
                " WHERE code_sha256 = %s FOR UPDATE",
                (digest,),
            ).fetchone()
            issued = issued_of_row(row)
            problem = refusal(issued, row[4] if row else None, item_id, now)
            if problem is not None:
                raise problem  # leaving the block rolls back: nothing spent
            con.execute(
                "UPDATE review_codes SET used_at = %s WHERE code_sha256 = %s",
                (now.isoformat(), digest),
            )
        assert issued is not None
        return issued

    def record_attempt(
        self, flow_run_id: str, attempt: str, *, item_id: str, result: str, now: datetime
    ) -> str:
        """Record how a run judged one form answer; the first record stands (returned)."""
        con = self._pool.connection()
        with con.transaction():
            con.execute(
                "INSERT INTO review_attempts (flow_run_id, attempt, item_id, result, at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (flow_run_id, attempt, item_id, result, now.isoformat()),
            )
            row = con.execute(
                "SELECT result FROM review_attempts WHERE flow_run_id = %s AND attempt = %s",
                (flow_run_id, attempt),
            ).fetchone()
        assert row is not None
        return str(row[0])

    def attempts(self, flow_run_id: str) -> dict[str, str]:
        """Every form answer ``flow_run_id`` judged: attempt key -> result code."""
        rows = (
            self._pool.connection()
            .execute(
                "SELECT attempt, result FROM review_attempts WHERE flow_run_id = %s",
                (flow_run_id,),
            )
            .fetchall()
        )
        return {str(a): str(r) for a, r in rows}

    def close(self) -> None:
        self._pool.close()
