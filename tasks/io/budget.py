"""Race-free budget reservations and throttle buckets in one SQLite file under PHARMALANE_HOME.

Every read-modify-write runs inside ``BEGIN IMMEDIATE``: SQLite takes its write lock before the
read, so two callers (threads or processes) can never both see the same headroom and both spend
it. A model call reserves its estimated cost before it runs and settles the actual cost after;
a reservation never settled (the caller crashed) is released after a TTL.

Committed spend of a period = settled actuals + open estimates. Settling an expired reservation
still books the actual: money spent is never forgotten.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from tasks.core.periods import period_window
from tasks.errors import BudgetExceeded, DataContractError
from tasks.settings import Budget

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    period_start TEXT NOT NULL,
    estimate_usd REAL NOT NULL,
    actual_usd REAL,
    status TEXT NOT NULL CHECK (status IN ('open', 'settled', 'expired')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    settled_at TEXT
);
CREATE INDEX IF NOT EXISTS reservations_window ON reservations (workflow, period_start, status);
CREATE INDEX IF NOT EXISTS reservations_open ON reservations (status, expires_at);
CREATE TABLE IF NOT EXISTS buckets (
    workflow TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Reservation:
    id: str
    workflow: str
    period_start: datetime
    estimate_usd: float


@dataclass(frozen=True)
class Spend:
    workflow: str
    period_start: datetime
    limit_usd: float
    settled_usd: float
    reserved_usd: float
    open_reservations: int

    @property
    def committed_usd(self) -> float:
        return self.settled_usd + self.reserved_usd

    @property
    def remaining_usd(self) -> float:
        return self.limit_usd - self.committed_usd


def _check_amount(value: float, *, record: str, field: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise DataContractError(
            f"cost must be a finite number >= 0, got {value}", record=record, field=field
        )


class BudgetStore:
    """Reservations and token buckets in ``path`` (created on first use)."""

    def __init__(self, path: Path, *, reservation_ttl: timedelta = timedelta(minutes=15)):
        self.path = path
        self.reservation_ttl = reservation_ttl
        self._connections: dict[tuple[int, int], sqlite3.Connection] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def _connection(self) -> sqlite3.Connection:
        # one connection per thread and process, kept open: closing the last connection to a
        # WAL database checkpoints and fsyncs, which cost ~10 ms per call
        key = (os.getpid(), threading.get_ident())
        con = self._connections.get(key)
        if con is None:
            con = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            # WAL + NORMAL: a commit survives a crash of the process, not a power cut
            con.execute("PRAGMA synchronous=NORMAL")
            self._connections[key] = con
        return con

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        for con in self._connections.values():
            con.close()
        self._connections.clear()

    def _expire(self, con: sqlite3.Connection, now: datetime) -> None:
        con.execute(
            "UPDATE reservations SET status = 'expired' WHERE status = 'open' AND expires_at <= ?",
            (now.isoformat(),),
        )

    @staticmethod
    def _committed(
        con: sqlite3.Connection, workflow: str, start: datetime
    ) -> tuple[float, float, int]:
        row = con.execute(
            "SELECT coalesce(sum(CASE WHEN status = 'settled' THEN actual_usd END), 0),"
            " coalesce(sum(CASE WHEN status = 'open' THEN estimate_usd END), 0),"
            " count(CASE WHEN status = 'open' THEN 1 END)"
            " FROM reservations WHERE workflow = ? AND period_start = ?",
            (workflow, start.isoformat()),
        ).fetchone()
        return float(row[0]), float(row[1]), int(row[2])

    def reserve(self, budget: Budget, estimate_usd: float, now: datetime) -> Reservation:
        """Hold ``estimate_usd`` of ``budget`` for one call.

        Raises:
            BudgetExceeded: the hold would take committed spend over the period's limit.
            DataContractError: the estimate is negative or not a number.
        """
        _check_amount(estimate_usd, record=budget.workflow, field="estimate_usd")
        start, _ = period_window(budget.period, now)
        with self._transaction() as con:
            self._expire(con, now)
            settled, reserved, _ = self._committed(con, budget.workflow, start)
            if settled + reserved + estimate_usd > budget.usd + 1e-12:
                raise BudgetExceeded(
                    f"{budget.workflow}: reserving ${estimate_usd:.6f} would exceed the "
                    f"{budget.period} budget of ${budget.usd:.2f} "
                    f"(settled ${settled:.6f}, reserved ${reserved:.6f}); "
                    f"policy decides: {budget.on_exhaustion}"
                )
            reservation = Reservation(
                f"res-{uuid.uuid4().hex}", budget.workflow, start, estimate_usd
            )
            con.execute(
                "INSERT INTO reservations (id, workflow, period_start, estimate_usd, status,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
                (
                    reservation.id,
                    budget.workflow,
                    start.isoformat(),
                    estimate_usd,
                    now.isoformat(),
                    (now + self.reservation_ttl).isoformat(),
                ),
            )
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float, now: datetime) -> None:
        """Replace the estimate with what the call really cost (even if it expired meanwhile).

        Raises:
            DataContractError: negative or non-finite cost, or an unknown / settled reservation.
        """
        _check_amount(actual_usd, record=reservation.id, field="actual_usd")
        with self._transaction() as con:
            updated = con.execute(
                "UPDATE reservations SET status = 'settled', actual_usd = ?, settled_at = ?"
                " WHERE id = ? AND status IN ('open', 'expired')",
                (actual_usd, now.isoformat(), reservation.id),
            ).rowcount
            if updated != 1:
                raise DataContractError(
                    "reservation is unknown or already settled", record=reservation.id, field="id"
                )

    def spend(self, budget: Budget, now: datetime) -> Spend:
        start, _ = period_window(budget.period, now)
        with self._transaction() as con:
            self._expire(con, now)
            settled, reserved, n_open = self._committed(con, budget.workflow, start)
        return Spend(budget.workflow, start, budget.usd, settled, reserved, n_open)

    def take_token(self, workflow: str, calls_per_minute: int, now: datetime) -> float:
        """Token bucket: take one call slot; return 0.0, or the seconds to wait if none is free.

        The bucket holds at most ``calls_per_minute`` tokens and refills continuously at
        ``calls_per_minute / 60`` per second: the same semantics as a Prefect global
        concurrency limit with ``slot_decay_per_second``.
        """
        rate = calls_per_minute / 60.0
        stamp = now.timestamp()
        with self._transaction() as con:
            row = con.execute(
                "SELECT tokens, updated_at FROM buckets WHERE workflow = ?", (workflow,)
            ).fetchone()
            tokens = float(calls_per_minute)
            if row is not None:
                elapsed = max(0.0, stamp - float(row[1]))
                tokens = min(float(calls_per_minute), float(row[0]) + elapsed * rate)
                stamp = max(stamp, float(row[1]))
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
            con.execute(
                "INSERT OR REPLACE INTO buckets (workflow, tokens, updated_at) VALUES (?, ?, ?)",
                (workflow, tokens - 1.0 if wait == 0.0 else tokens, stamp),
            )
            return wait
