"""Budget reservations and throttle buckets on PostgreSQL, shared by every host.

The invariant and its rules are those of ``tasks/io/budget.py`` (the same refusal, the same
tally, integer nano-dollars, epoch seconds, lapsed holds counted at their estimates); only the
way races are closed differs. SQLite serialises writers on the whole file; here every reserve
and settle of a period first locks that period's ``budget_periods`` row (``SELECT ... FOR
UPDATE``), then reads the period's holds and writes. Locking the holds alone would not do: two
callers could each read the same sum and each insert a new hold. Callers of other workflows or
periods do not wait for each other. A throttle take locks its bucket's row the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import TupleRow

from tasks.core.periods import period_window
from tasks.errors import BudgetExceeded, DataContractError
from tasks.io.budget import (
    NANO,
    Kind,
    Reservation,
    Settlement,
    Spend,
    _refusal,
    _Tally,
    epoch,
    spend_of,
    take_from_bucket,
    to_nano,
)
from tasks.io.postgres import shared_pool
from tasks.rules import Budget

Connection = psycopg.Connection[TupleRow]

_INSERT = (
    "INSERT INTO holds (id, workflow, period_start, kind, estimate_nusd, actual_nusd, status,"
    " created_at, expires_at, settled_at, parent, reasons)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _lock_period(con: Connection, workflow: str, start: int) -> None:
    """Hold the period's row until the transaction ends: one spender of a period at a time."""
    con.execute(
        "INSERT INTO budget_periods (workflow, period_start) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        (workflow, start),
    )
    con.execute(
        "SELECT 1 FROM budget_periods WHERE workflow = %s AND period_start = %s FOR UPDATE",
        (workflow, start),
    )


def _lapse_and_tally(con: Connection, workflow: str, start: int, at: float) -> _Tally:
    """Lapse the period's holds past their TTL, then count its money by (kind, status)."""
    con.execute(
        "UPDATE holds SET status = 'lapsed' WHERE workflow = %s AND period_start = %s"
        " AND status = 'open' AND expires_at <= %s",
        (workflow, start, at),
    )
    rows = con.execute(
        "SELECT kind, status, count(*),"
        " coalesce(sum(CASE WHEN status = 'settled' THEN actual_nusd ELSE estimate_nusd END),"
        " 0) FROM holds WHERE workflow = %s AND period_start = %s GROUP BY kind, status",
        (workflow, start),
    ).fetchall()
    return _Tally({(str(k), str(s)): (int(n), int(v)) for k, s, n, v in rows})


class PostgresBudgetStore:
    """Reservations and token buckets in the database at ``url`` (migrated on first use)."""

    def __init__(self, url: str, *, reservation_ttl: timedelta = timedelta(minutes=15)):
        self.reservation_ttl = reservation_ttl
        self._pool = shared_pool(url)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        con = self._pool.connection()
        with con.transaction():
            yield con

    def close(self) -> None:
        self._pool.close()

    def reserve(
        self,
        budget: Budget,
        estimate_usd: float,
        now: datetime,
        *,
        override: Sequence[str] = (),
    ) -> Reservation:
        """Hold ``estimate_usd`` of ``budget`` for one call (see ``BudgetStore.reserve``).

        Raises:
            BudgetExceeded: no override given, and the hold would break the invariant.
            DataContractError: the estimate is negative, not finite or huge; ``now`` is naive.
        """
        estimate = to_nano(estimate_usd, record=budget.workflow, field="estimate_usd")
        at = epoch(now, record=budget.workflow)
        start, _ = period_window(budget.period, now)
        period = int(start.timestamp())
        with self._transaction() as con:
            _lock_period(con, budget.workflow, period)
            refusal = _refusal(budget, _lapse_and_tally(con, budget.workflow, period, at), estimate)
            if refusal is not None and not override:
                raise BudgetExceeded(f"{refusal}; policy decides: {budget.on_exhaustion}")
            kind: Kind = "grant" if refusal is None else "override"
            reservation = Reservation(
                f"res-{uuid.uuid4().hex}", budget.workflow, start, estimate / NANO, kind
            )
            reasons = ",".join(override) if kind == "override" else None
            hold = (reservation.id, budget.workflow, period, kind, estimate, None, "open", at)
            expires = at + self.reservation_ttl.total_seconds()
            con.execute(_INSERT, (*hold, expires, None, None, reasons))
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float, now: datetime) -> Settlement:
        """Replace a hold's estimate with what the call cost, even after it lapsed.

        Raises:
            DataContractError: negative or non-finite cost, naive ``now``, or an unknown or
                already settled reservation.
        """
        actual = to_nano(actual_usd, record=reservation.id, field="actual_usd")
        at = epoch(now, record=reservation.id)
        unknown = DataContractError(
            "reservation is unknown or already settled", record=reservation.id, field="id"
        )
        with self._transaction() as con:
            where = con.execute(
                "SELECT workflow, period_start FROM holds WHERE id = %s", (reservation.id,)
            ).fetchone()
            if where is None:
                raise unknown
            workflow, start = str(where[0]), int(where[1])
            _lock_period(con, workflow, start)
            row = con.execute(
                "SELECT estimate_nusd FROM holds WHERE id = %s AND kind != 'overage'"
                " AND status != 'settled' FOR UPDATE",
                (reservation.id,),
            ).fetchone()
            if row is None:
                raise unknown
            estimate = int(row[0])
            booked, over = min(actual, estimate), max(0, actual - estimate)
            con.execute(
                "UPDATE holds SET status = 'settled', actual_nusd = %s, settled_at = %s"
                " WHERE id = %s",
                (booked, at, reservation.id),
            )
            if over:
                overage = (f"{reservation.id}-overage", workflow, start, "overage", 0, over)
                con.execute(_INSERT, (*overage, "settled", at, at, at, reservation.id, None))
        return Settlement(reservation.id, booked / NANO, over / NANO)

    def spend(self, budget: Budget, now: datetime) -> Spend:
        """The period's money by kind (lapsing holds past their TTL on the way)."""
        at = epoch(now, record=budget.workflow)
        start, _ = period_window(budget.period, now)
        period = int(start.timestamp())
        with self._transaction() as con:
            _lock_period(con, budget.workflow, period)
            tally = _lapse_and_tally(con, budget.workflow, period, at)
        return spend_of(budget, start, tally)

    def overrides(self, workflow: str) -> list[tuple[str, str]]:
        """(reservation id, reason codes) of every override row of ``workflow``, oldest first."""
        rows = (
            self._pool.connection()
            .execute(
                "SELECT id, reasons FROM holds WHERE workflow = %s AND kind = 'override'"
                " ORDER BY created_at",
                (workflow,),
            )
            .fetchall()
        )
        return [(str(i), str(r)) for i, r in rows]

    def take_token(self, workflow: str, calls_per_minute: int, now: datetime) -> float:
        """Token bucket shared by every host (see ``BudgetStore.take_token``)."""
        at = epoch(now, record=workflow)
        with self._transaction() as con:
            con.execute(
                "INSERT INTO buckets (workflow, tokens, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (workflow, float(calls_per_minute), at),
            )
            row = con.execute(
                "SELECT tokens, updated_at FROM buckets WHERE workflow = %s FOR UPDATE",
                (workflow,),
            ).fetchone()
            assert row is not None  # inserted above, and rows are never deleted
            left, stamp, wait = take_from_bucket(
                (float(row[0]), float(row[1])), calls_per_minute, at
            )
            con.execute(
                "UPDATE buckets SET tokens = %s, updated_at = %s WHERE workflow = %s",
                (left, stamp, workflow),
            )
        return wait
