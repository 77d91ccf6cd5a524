"""Budget reservations and throttle buckets in one SQLite file under PHARMALANE_HOME.

(Its PostgreSQL twin for several hosts, ``tasks/io/budget_pg.py``, keeps the same invariant with
the same refusal and tally; ``Budgets`` is the interface of both.)

Invariant, per workflow and budget period:

    committed spend <= limit, unless override or overage rows exist, each of them alerted.

where committed spend = the sum over the period's rows of (actual if settled, else estimate).
How each way of breaking it is closed:

- Races: every read-modify-write runs in ``BEGIN IMMEDIATE``; SQLite takes its write lock
  before the read, so two threads or processes never both spend the same headroom.
- ``reserve`` grants a hold only if committed + estimate <= limit. Once committed >= limit
  nothing is granted, not even $0; once an overage was booked in the period nothing is granted
  until the period resets (its estimates proved wrong).
- ``settle`` never books more than a reservation's estimate on it. Callers make the estimate a
  true upper bound (every token the call may use x the most expensive model it may end on);
  should an actual still exceed it, the excess is booked as a separate ``overage`` row that
  the supervisor step alerts on and ``pharmalane budget status`` shows.
- Time never frees money. A hold past its TTL is ``lapsed``: its caller is presumed dead and
  the hold counts as spent at its estimate (the call may have been billed). A late settle
  replaces the estimate with the actual, as for any hold.
- Clocks: times are stored as epoch seconds (instants, never strings), so a +05:00 clock
  cannot move a hold; a naive datetime is refused. Money is integer nano-dollars, so sums do
  not drift; estimates round up, limits round down.
- The one way past the limit is ``reserve(..., override=codes)``: the codes of the
  urgent-safety policy rule, recorded as a row of kind ``override`` that the supervisor step
  alerts on (audit trail + WARNING) and budget status reports apart.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from tasks.core.periods import period_window
from tasks.errors import BudgetExceeded, DataContractError
from tasks.io.sqlite_wal import enable_wal, kept_connection
from tasks.rules import Budget

Kind = Literal["grant", "override", "overage"]

NANO = 1_000_000_000  # nano-dollars per dollar
MAX_USD = 1e9  # one call costing more is a bug upstream

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'override', 'overage')),
    estimate_nusd INTEGER NOT NULL CHECK (estimate_nusd >= 0),
    actual_nusd INTEGER CHECK (actual_nusd >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'lapsed', 'settled')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    settled_at REAL,
    parent TEXT,
    reasons TEXT,
    CHECK (kind != 'override' OR length(reasons) > 0),
    CHECK (status != 'settled' OR actual_nusd IS NOT NULL)
)""",
    "CREATE INDEX IF NOT EXISTS holds_window ON holds (workflow, period_start)",
    "CREATE INDEX IF NOT EXISTS holds_open ON holds (status, expires_at)",
    """CREATE TABLE IF NOT EXISTS buckets (
    workflow TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at REAL NOT NULL
)""",
)

_INSERT = (
    "INSERT INTO holds (id, workflow, period_start, kind, estimate_nusd, actual_nusd, status,"
    " created_at, expires_at, settled_at, parent, reasons)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Reservation:
    id: str
    workflow: str
    period_start: datetime
    estimate_usd: float
    kind: Kind = "grant"


@dataclass(frozen=True)
class Settlement:
    """What a settle booked: at most the estimate on the reservation, the rest as overage."""

    reservation_id: str
    booked_usd: float
    overage_usd: float


@dataclass(frozen=True)
class Spend:
    """A period's money by kind; ``committed_usd`` is what the invariant bounds."""

    workflow: str
    period_start: datetime
    limit_usd: float
    settled_usd: float  # granted holds settled at their actuals
    reserved_usd: float  # granted holds in flight, at their estimates
    lapsed_usd: float  # granted holds past their TTL, counted as spent at their estimates
    override_usd: float  # urgent-safety overrides (actual if settled, else estimate)
    overage_usd: float  # actuals above their estimates
    open_reservations: int
    lapsed_reservations: int = 0
    overrides: int = 0
    overages: int = 0

    @property
    def committed_usd(self) -> float:
        return (
            self.settled_usd
            + self.reserved_usd
            + self.lapsed_usd
            + self.override_usd
            + self.overage_usd
        )

    @property
    def remaining_usd(self) -> float:
        return self.limit_usd - self.committed_usd


def to_nano(usd: float, *, record: str, field: str) -> int:
    """``usd`` as integer nano-dollars, rounded up (a hold never covers less than asked).

    Raises:
        DataContractError: negative, not finite, or above ``MAX_USD``.
    """
    if not math.isfinite(usd) or usd < 0 or usd > MAX_USD:
        raise DataContractError(
            f"cost must be a finite number from 0 to {MAX_USD:.0f} USD, got {usd}",
            record=record,
            field=field,
        )
    return math.ceil(round(usd * NANO, 3))


def epoch(moment: datetime, *, record: str) -> float:
    """``moment`` as epoch seconds: an instant, whatever its time zone.

    Raises:
        DataContractError: ``moment`` is naive (it would shift holds by the host's UTC offset).
    """
    if moment.utcoffset() is None:
        raise DataContractError(
            "naive datetime: pass an aware time such as datetime.now(UTC); a naive clock "
            "would move holds and budget periods by the host's UTC offset",
            record=record,
            field="now",
        )
    return moment.timestamp()


def _limit_nano(budget: Budget) -> int:
    return math.floor(round(budget.usd * NANO, 3))


@dataclass(frozen=True)
class _Tally:
    """Nano-dollars and row counts of one period, by (kind, status)."""

    rows: dict[tuple[str, str], tuple[int, int]]

    def nusd(self, kind: str, status: str | None = None) -> int:
        return sum(v for (k, s), (_, v) in self.rows.items() if k == kind and status in (None, s))

    def count(self, kind: str, status: str | None = None) -> int:
        return sum(n for (k, s), (n, _) in self.rows.items() if k == kind and status in (None, s))

    @property
    def committed(self) -> int:
        return sum(v for _, v in self.rows.values())


def _refusal(budget: Budget, tally: _Tally, estimate: int) -> str | None:
    """Why a grant of ``estimate`` would break the invariant, or None if it fits."""
    limit, committed = _limit_nano(budget), tally.committed
    spent = f"committed ${committed / NANO:.6f} of ${budget.usd:.2f}"
    if tally.count("overage"):
        return (
            f"{budget.workflow}: an actual cost exceeded its estimate this {budget.period} "
            f"(overage ${tally.nusd('overage') / NANO:.6f}); no grant until the period resets"
        )
    if committed >= limit:
        return f"{budget.workflow}: the {budget.period} budget is spent ({spent})"
    if committed + estimate > limit:
        return (
            f"{budget.workflow}: reserving ${estimate / NANO:.6f} would exceed the "
            f"{budget.period} budget ({spent})"
        )
    return None


def spend_of(budget: Budget, start: datetime, tally: _Tally) -> Spend:
    """The ``Spend`` report of one period's tally (both stores report alike)."""
    return Spend(
        budget.workflow,
        start,
        budget.usd,
        settled_usd=tally.nusd("grant", "settled") / NANO,
        reserved_usd=tally.nusd("grant", "open") / NANO,
        lapsed_usd=tally.nusd("grant", "lapsed") / NANO,
        override_usd=tally.nusd("override") / NANO,
        overage_usd=tally.nusd("overage") / NANO,
        open_reservations=tally.count("grant", "open"),
        lapsed_reservations=tally.count("grant", "lapsed"),
        overrides=tally.count("override"),
        overages=tally.count("overage"),
    )


def take_from_bucket(
    row: tuple[float, float] | None, calls_per_minute: int, at: float
) -> tuple[float, float, float]:
    """One take from a token bucket stored as (tokens, updated_at), or None if never used.

    Returns (tokens to store, stamp to store, seconds to wait: 0.0 when the call may go).
    A clock that steps back refills nothing.
    """
    rate = calls_per_minute / 60.0
    tokens, stamp = float(calls_per_minute), at
    if row is not None:
        elapsed = max(0.0, at - float(row[1]))
        tokens = min(float(calls_per_minute), float(row[0]) + elapsed * rate)
        stamp = max(at, float(row[1]))
    wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
    return (tokens - 1.0 if wait == 0.0 else tokens), stamp, wait


class Budgets(Protocol):
    """Budget reservations and throttle buckets: the embedded SQLite ``BudgetStore`` or
    ``PostgresBudgetStore`` (``tasks/io/budget_pg.py``); both keep the invariant above."""

    reservation_ttl: timedelta

    def reserve(
        self, budget: Budget, estimate_usd: float, now: datetime, *, override: Sequence[str] = ()
    ) -> Reservation: ...

    def settle(self, reservation: Reservation, actual_usd: float, now: datetime) -> Settlement: ...

    def spend(self, budget: Budget, now: datetime) -> Spend: ...

    def overrides(self, workflow: str) -> list[tuple[str, str]]: ...

    def take_token(self, workflow: str, calls_per_minute: int, now: datetime) -> float: ...

    def close(self) -> None: ...


class BudgetStore:
    """Reservations and token buckets in ``path`` (created on first use)."""

    def __init__(self, path: Path, *, reservation_ttl: timedelta = timedelta(minutes=15)):
        self.path = path
        self.reservation_ttl = reservation_ttl
        self._connections: dict[tuple[int, int], sqlite3.Connection] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            enable_wal(con)
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                con.execute(statement)
            _migrate_v1(con)
            con.execute("COMMIT")
        finally:
            con.close()

    def _connection(self) -> sqlite3.Connection:
        return kept_connection(self._connections, self.path, timeout=60)

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

    @staticmethod
    def _lapse(con: sqlite3.Connection, at: float) -> None:
        """Holds past their TTL: the caller is presumed dead, the estimate presumed spent."""
        con.execute(
            "UPDATE holds SET status = 'lapsed' WHERE status = 'open' AND expires_at <= ?", (at,)
        )

    @staticmethod
    def _tally(con: sqlite3.Connection, workflow: str, start: float) -> _Tally:
        rows = con.execute(
            "SELECT kind, status, count(*),"
            " coalesce(sum(CASE WHEN status = 'settled' THEN actual_nusd ELSE estimate_nusd END),"
            " 0) FROM holds WHERE workflow = ? AND period_start = ? GROUP BY kind, status",
            (workflow, int(start)),
        ).fetchall()
        return _Tally({(k, s): (int(n), int(v)) for k, s, n, v in rows})

    def reserve(
        self,
        budget: Budget,
        estimate_usd: float,
        now: datetime,
        *,
        override: Sequence[str] = (),
    ) -> Reservation:
        """Hold ``estimate_usd`` of ``budget`` for one call.

        Args:
            budget: the workflow's budget.
            estimate_usd: the most the call can cost (a true upper bound).
            now: an aware time; the hold belongs to the period holding it.
            override: reason codes of the urgent-safety rule that lets this call go on over
                budget. Used only if a grant is refused; the row is then of kind ``override``
                and the caller must alert.

        Raises:
            BudgetExceeded: no override given, and the hold would break the invariant.
            DataContractError: the estimate is negative, not finite or huge; ``now`` is naive.
        """
        estimate = to_nano(estimate_usd, record=budget.workflow, field="estimate_usd")
        at = epoch(now, record=budget.workflow)
        start, _ = period_window(budget.period, now)
        with self._transaction() as con:
            self._lapse(con, at)
            refusal = _refusal(
                budget, self._tally(con, budget.workflow, start.timestamp()), estimate
            )
            if refusal is not None and not override:
                raise BudgetExceeded(f"{refusal}; policy decides: {budget.on_exhaustion}")
            kind: Kind = "grant" if refusal is None else "override"
            reservation = Reservation(
                f"res-{uuid.uuid4().hex}", budget.workflow, start, estimate / NANO, kind
            )
            con.execute(
                _INSERT,
                (
                    reservation.id,
                    budget.workflow,
                    int(start.timestamp()),
                    kind,
                    estimate,
                    None,
                    "open",
                    at,
                    at + self.reservation_ttl.total_seconds(),
                    None,
                    None,
                    ",".join(override) if kind == "override" else None,
                ),
            )
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float, now: datetime) -> Settlement:
        """Replace a hold's estimate with what the call cost, even after it lapsed.

        At most the estimate is booked on the reservation; any excess becomes an ``overage``
        row (returned, for the caller to alert on), and the period grants nothing more.

        Raises:
            DataContractError: negative or non-finite cost, naive ``now``, or an unknown or
                already settled reservation.
        """
        actual = to_nano(actual_usd, record=reservation.id, field="actual_usd")
        at = epoch(now, record=reservation.id)
        with self._transaction() as con:
            row = con.execute(
                "SELECT workflow, period_start, estimate_nusd FROM holds"
                " WHERE id = ? AND kind != 'overage' AND status != 'settled'",
                (reservation.id,),
            ).fetchone()
            if row is None:
                raise DataContractError(
                    "reservation is unknown or already settled", record=reservation.id, field="id"
                )
            workflow, start, estimate = str(row[0]), int(row[1]), int(row[2])
            booked, over = _book(con, reservation.id, workflow, start, estimate, actual, at)
        return Settlement(reservation.id, booked / NANO, over / NANO)

    def spend(self, budget: Budget, now: datetime) -> Spend:
        """The period's money by kind (lapsing holds past their TTL on the way)."""
        at = epoch(now, record=budget.workflow)
        start, _ = period_window(budget.period, now)
        with self._transaction() as con:
            self._lapse(con, at)
            tally = self._tally(con, budget.workflow, start.timestamp())
        return spend_of(budget, start, tally)

    def overrides(self, workflow: str) -> list[tuple[str, str]]:
        """(reservation id, reason codes) of every override row of ``workflow``, oldest first."""
        with self._transaction() as con:
            rows = con.execute(
                "SELECT id, reasons FROM holds WHERE workflow = ? AND kind = 'override'"
                " ORDER BY created_at",
                (workflow,),
            ).fetchall()
        return [(str(i), str(r)) for i, r in rows]

    def take_token(self, workflow: str, calls_per_minute: int, now: datetime) -> float:
        """Token bucket: take one call slot; return 0.0, or the seconds to wait if none is free.

        The bucket holds at most ``calls_per_minute`` tokens and refills continuously at
        ``calls_per_minute / 60`` per second: the same semantics as a Prefect global
        concurrency limit with ``slot_decay_per_second``.
        """
        at = epoch(now, record=workflow)
        with self._transaction() as con:
            row = con.execute(
                "SELECT tokens, updated_at FROM buckets WHERE workflow = ?", (workflow,)
            ).fetchone()
            left, stamp, wait = take_from_bucket(row, calls_per_minute, at)
            con.execute(
                "INSERT OR REPLACE INTO buckets (workflow, tokens, updated_at) VALUES (?, ?, ?)",
                (workflow, left, stamp),
            )
            return wait


def _book(
    con: sqlite3.Connection,
    hold_id: str,
    workflow: str,
    start: int,
    estimate: int,
    actual: int,
    at: float,
) -> tuple[int, int]:
    """Settle ``hold_id`` at min(actual, estimate); the excess goes on an overage row."""
    booked, over = min(actual, estimate), max(0, actual - estimate)
    con.execute(
        "UPDATE holds SET status = 'settled', actual_nusd = ?, settled_at = ? WHERE id = ?",
        (booked, at, hold_id),
    )
    if over:
        overage = (f"{hold_id}-overage", workflow, start, "overage", 0, over, "settled")
        con.execute(_INSERT, (*overage, at, at, at, hold_id, None))
    return booked, over


def _v1_epoch(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _migrate_v1(con: sqlite3.Connection) -> None:
    """Bring rows of the first schema (ISO-text times, REAL dollars) over; nothing is freed.

    Its 'expired' holds come back open and lapse at once: counted at their estimates.
    """
    if not con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reservations'"
    ).fetchone():
        return
    for hold_id, workflow, start, est, actual, status, created, expires, settled in con.execute(
        "SELECT id, workflow, period_start, estimate_usd, actual_usd, status, created_at,"
        " expires_at, settled_at FROM reservations"
    ).fetchall():
        estimate = to_nano(float(est), record=hold_id, field="estimate_usd")
        row = (hold_id, workflow, int(_v1_epoch(start)), "grant", estimate, None, "open")
        con.execute(_INSERT, (*row, _v1_epoch(created), _v1_epoch(expires), None, None, None))
        if status == "settled":
            spent = to_nano(float(actual), record=hold_id, field="actual_usd")
            _book(con, hold_id, workflow, row[2], estimate, spent, _v1_epoch(settled))
    con.execute("DROP TABLE reservations")
