"""Request token buckets on PostgreSQL: one rate limit for every intake replica on every host.

Same invariant and arithmetic as ``tasks/io/rate_limit.py``; a take locks its bucket's row
(``SELECT ... FOR UPDATE`` after an ``INSERT ... ON CONFLICT DO NOTHING`` of a full bucket, so
even the first take of a new bucket is serialised), and two replicas can never both spend the
last token. Buckets idle for a minute are full again and pruned.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.io.postgres import shared_pool
from tasks.io.rate_limit import paced_claim, refilled, seconds_to_one, take_one

_REFILL_SECONDS = 60.0
Step = Callable[[tuple[float, float]], tuple[float, float, float]]
# rows locked by another take are skipped, never waited for: two prunes cannot deadlock
_PRUNE = (
    "DELETE FROM request_buckets WHERE bucket IN (SELECT bucket FROM request_buckets"
    " WHERE updated_at < %s AND bucket != %s FOR UPDATE SKIP LOCKED)"
)


class PostgresRequestBuckets:
    """Token buckets keyed by name in the ``request_buckets`` table of the database at ``url``."""

    def __init__(self, url: str):
        self._pool = shared_pool(url)

    def wait(self, bucket: str, per_minute: int, now: float) -> float:
        """Seconds until ``bucket`` has a token (0.0: one is free); takes nothing."""
        row = (
            self._pool.connection()
            .execute("SELECT tokens, updated_at FROM request_buckets WHERE bucket = %s", (bucket,))
            .fetchone()
        )
        stored = None if row is None else (float(row[0]), float(row[1]))
        tokens, _ = refilled(stored, per_minute, now)
        return seconds_to_one(tokens, per_minute)

    def take(self, bucket: str, per_minute: int, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is free (nothing taken)."""
        return self._step(
            bucket, now, float(per_minute), lambda row: take_one(row, per_minute, now)
        )

    def claim(self, bucket: str, per_second: float, now: float) -> float:
        """Take the bucket's one token, paced at ``per_second`` (see ``RequestBuckets.claim``)."""
        return self._step(bucket, now, 1.0, lambda row: paced_claim(row, per_second, now))

    def _step(self, bucket: str, now: float, full: float, step: Step) -> float:
        """Lock the bucket's row (a full bucket is inserted first if none), step it, store it."""
        con = self._pool.connection()
        with con.transaction():
            new = con.execute(
                "INSERT INTO request_buckets (bucket, tokens, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (bucket, full, now),
            )
            if new.rowcount:  # as in SQLite: prune full-again buckets when one is added
                con.execute(_PRUNE, (now - _REFILL_SECONDS, bucket))
            row = con.execute(
                "SELECT tokens, updated_at FROM request_buckets WHERE bucket = %s FOR UPDATE",
                (bucket,),
            ).fetchone()
            assert row is not None  # inserted above; pruning skips this bucket
            left, stamp, wait = step((float(row[0]), float(row[1])))
            con.execute(
                "UPDATE request_buckets SET tokens = %s, updated_at = %s WHERE bucket = %s",
                (left, stamp, bucket),
            )
        return wait

    def close(self) -> None:
        self._pool.close()
