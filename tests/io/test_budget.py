"""Budget reservations and throttles on a real SQLite file, raced by threads and processes."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tasks.errors import BudgetExceeded, DataContractError
from tasks.io.budget import BudgetStore, Reservation
from tasks.rules import Budget

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
BUDGET = Budget(workflow="nightly-literature-scan", period="day", usd=5.0, on_exhaustion="defer")
ESTIMATE = 0.30  # 16 reservations fit in $5.00, the 17th does not


def _reserve_once(path: str) -> Reservation | None:
    try:
        return BudgetStore(Path(path)).reserve(BUDGET, ESTIMATE, NOW)
    except BudgetExceeded:
        return None


def _race(path: Path, threads: int, processes: int) -> list[Reservation | None]:
    BudgetStore(path)  # schema first, so the racers only race on reservations
    start = threading.Barrier(threads)

    def thread_caller() -> Reservation | None:
        start.wait()
        return _reserve_once(str(path))

    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(processes, mp_context=spawn) as procs,
        ThreadPoolExecutor(threads) as pool,
    ):
        from_procs = [procs.submit(_reserve_once, str(path)) for _ in range(processes)]
        from_threads = [pool.submit(thread_caller) for _ in range(threads)]
        return [f.result() for f in from_threads + from_procs]


@pytest.mark.slow
def test_fifty_concurrent_reservations_never_exceed_the_budget_and_settle_corrects(tmp_path):
    path = tmp_path / "budget.sqlite"
    results = _race(path, threads=44, processes=6)
    granted = [r for r in results if r is not None]
    assert len(results) == 50
    assert len(granted) == 16
    store = BudgetStore(path)
    spend = store.spend(BUDGET, NOW)
    assert spend.open_reservations == 16
    assert spend.committed_usd == pytest.approx(16 * ESTIMATE)
    assert spend.committed_usd <= BUDGET.usd

    # each call really cost a third of its estimate: settling frees the difference
    for reservation in granted:
        store.settle(reservation, 0.10, NOW)
    spend = store.spend(BUDGET, NOW)
    assert (spend.settled_usd, spend.reserved_usd) == (pytest.approx(1.6), 0.0)
    # $3.40 of headroom again: 11 more estimates of $0.30 fit, the 12th does not
    second = _race(path, threads=20, processes=2)
    assert sum(r is not None for r in second) == 11
    assert store.spend(BUDGET, NOW).committed_usd == pytest.approx(1.6 + 11 * ESTIMATE)


ONE = Budget(workflow="escalation-lane", period="day", usd=1.0, on_exhaustion="defer")


def assert_invariant(store: BudgetStore, budget: Budget, now: datetime) -> None:
    """committed <= limit, except by override and overage rows (which the steps alert on)."""
    spend = store.spend(budget, now)
    assert spend.committed_usd - spend.override_usd - spend.overage_usd <= budget.usd + 1e-9
    if not (spend.overrides or spend.overages):
        assert spend.committed_usd <= budget.usd + 1e-9


def test_a_settle_at_twice_the_estimate_books_an_overage_row_and_shuts_the_period(tmp_path):
    # the attack: settle at 2x the estimate gave $1.02 committed on a $1.00 budget, unrecorded
    store = BudgetStore(tmp_path / "b.sqlite")
    first = store.reserve(ONE, 0.51, NOW)
    second = store.reserve(ONE, 0.49, NOW)
    settled = store.settle(first, 1.02, NOW)
    assert (settled.booked_usd, settled.overage_usd) == (0.51, 0.51)
    spend = store.spend(ONE, NOW)
    assert (spend.settled_usd, spend.reserved_usd, spend.overage_usd) == (0.51, 0.49, 0.51)
    assert spend.overages == 1 and spend.committed_usd == pytest.approx(1.51)
    assert_invariant(store, ONE, NOW)
    store.settle(second, 0.10, NOW)  # room again by the numbers, but the estimates lied
    with pytest.raises(BudgetExceeded, match="exceeded its estimate"):
        store.reserve(ONE, 0.01, NOW)
    # the next period starts clean
    assert store.reserve(ONE, 0.5, NOW + timedelta(days=1)).kind == "grant"
    with pytest.raises(DataContractError, match=rf"record {first.id}, field id"):
        store.settle(first, 0.2, NOW)


def test_an_overage_below_the_limit_still_refuses_every_later_grant(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    store.settle(store.reserve(ONE, 0.20, NOW), 0.30, NOW)
    assert store.spend(ONE, NOW).committed_usd == pytest.approx(0.30)
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.0, NOW)


def test_nothing_is_granted_on_a_spent_budget_not_even_zero_dollars(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    held = store.reserve(ONE, 1.0, NOW)  # exactly the limit: allowed
    with pytest.raises(BudgetExceeded, match="budget is spent"):
        store.reserve(ONE, 0.0, NOW)
    store.settle(held, 1.0, NOW)
    with pytest.raises(BudgetExceeded, match="budget is spent"):
        store.reserve(ONE, 0.0, NOW)
    assert store.spend(ONE, NOW).committed_usd == 1.0


def test_an_expired_hold_keeps_holding_and_a_late_settle_replaces_its_estimate(tmp_path):
    # the attack: the hold expired, freed $1.00, $0.80 was granted, the late settle booked
    # $1.00 anyway: $1.80 on $1.00
    store = BudgetStore(tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=5))
    held = store.reserve(ONE, 1.0, NOW)
    later = NOW + timedelta(minutes=6)
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.80, later)
    spend = store.spend(ONE, later)
    assert (spend.open_reservations, spend.lapsed_reservations, spend.lapsed_usd) == (0, 1, 1.0)
    assert spend.committed_usd == 1.0  # presumed spent at its estimate, never freed
    store.settle(held, 1.0, later)
    assert store.spend(ONE, later).committed_usd == 1.0
    assert_invariant(store, ONE, later)


def test_a_late_settle_below_the_estimate_frees_the_difference(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=5))
    held = store.reserve(ONE, 1.0, NOW)
    hours_later = NOW + timedelta(hours=10)
    store.settle(held, 0.40, hours_later)
    assert store.reserve(ONE, 0.60, hours_later).kind == "grant"
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.0, hours_later)
    assert_invariant(store, ONE, hours_later)


@pytest.mark.parametrize("hours", [5, -5, 14, -12])
def test_hold_expiry_compares_instants_not_clock_strings(tmp_path, hours):
    # the attack: "14:31+05:00" > "09:35+00:00" as text, so the hold expired 4 minutes early
    zone = timezone(timedelta(hours=hours))
    store = BudgetStore(tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=5))
    store.reserve(ONE, 1.0, NOW)
    in_flight = (NOW + timedelta(minutes=1)).astimezone(zone)
    spend = store.spend(ONE, in_flight)
    assert (spend.open_reservations, spend.lapsed_reservations) == (1, 0)
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.5, in_flight)
    past_ttl = (NOW + timedelta(minutes=5)).astimezone(zone)
    spend = store.spend(ONE, past_ttl)
    assert (spend.open_reservations, spend.lapsed_reservations) == (0, 1)
    assert spend.committed_usd == 1.0


def test_a_local_clock_books_into_the_utc_period(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    # 02:00 on the 23rd at +05:00 is 21:00 UTC on the 22nd: today's budget, not tomorrow's
    local = datetime(2026, 11, 23, 2, 0, tzinfo=timezone(timedelta(hours=5)))
    assert store.reserve(ONE, 1.0, local).period_start == datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.1, NOW)


def test_naive_datetimes_are_refused_everywhere(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    naive = NOW.replace(tzinfo=None)
    held = store.reserve(ONE, 0.1, NOW)
    for call in (
        lambda: store.reserve(ONE, 0.1, naive),
        lambda: store.settle(held, 0.1, naive),
        lambda: store.spend(ONE, naive),
        lambda: store.take_token("escalation-lane", 10, naive),
    ):
        with pytest.raises(DataContractError, match="field now: naive datetime"):
            call()
    assert store.spend(ONE, NOW).open_reservations == 1  # the refused settle changed nothing


def test_an_override_is_the_only_way_past_the_limit_and_is_reported_apart(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    store.reserve(ONE, 0.9, NOW, override=["BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES"])
    assert store.spend(ONE, NOW).overrides == 0  # it fitted: a plain grant, no override
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.2, NOW)
    urgent = store.reserve(ONE, 0.2, NOW, override=["BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES"])
    assert urgent.kind == "override"
    store.settle(urgent, 0.15, NOW)
    spend = store.spend(ONE, NOW)
    assert (spend.overrides, spend.override_usd, spend.reserved_usd) == (1, 0.15, 0.9)
    assert spend.committed_usd == pytest.approx(1.05)
    assert store.overrides("escalation-lane") == [
        (urgent.id, "BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES")
    ]
    assert_invariant(store, ONE, NOW)


V1_SCHEMA = """
CREATE TABLE reservations (
    id TEXT PRIMARY KEY, workflow TEXT NOT NULL, period_start TEXT NOT NULL,
    estimate_usd REAL NOT NULL, actual_usd REAL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL, settled_at TEXT
);
"""


def test_rows_of_the_first_schema_are_migrated_and_nothing_is_freed(tmp_path):
    path = tmp_path / "b.sqlite"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    start = "2026-11-22T00:00:00+00:00"
    con.executemany(
        "INSERT INTO reservations VALUES (?, 'escalation-lane', ?, ?, ?, ?, ?, ?, ?)",
        [
            ("a", start, 0.5, 0.7, "settled", "2026-11-22T09:00:00+00:00",
             "2026-11-22T09:15:00+00:00", "2026-11-22T09:01:00+00:00"),
            ("b", start, 0.2, None, "expired", "2026-11-22T09:00:00",
             "2026-11-22T09:15:00", None),
        ],
    )  # fmt: skip
    con.commit()
    con.close()
    store = BudgetStore(path)
    spend = store.spend(ONE, NOW)
    assert (spend.settled_usd, spend.overage_usd, spend.lapsed_usd) == (0.5, 0.2, 0.2)
    with pytest.raises(BudgetExceeded):
        store.reserve(ONE, 0.0, NOW)
    BudgetStore(path)  # opening again migrates nothing twice
    assert store.spend(ONE, NOW).committed_usd == pytest.approx(0.9)


def test_next_period_has_a_fresh_budget(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    store.reserve(BUDGET, 5.0, NOW)
    tomorrow = NOW + timedelta(days=1)
    assert store.spend(BUDGET, tomorrow).committed_usd == 0.0
    assert store.reserve(BUDGET, 5.0, tomorrow).period_start == datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(6))
def test_random_operation_sequences_keep_the_invariant(tmp_path, seed):
    """Reserve, settle (at or under the estimate, on time or late), let time pass, in any
    order: committed spend never passes the limit and always equals the model's sum."""
    rng = random.Random(seed)
    store = BudgetStore(tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=5))
    now, held, expected, refused = NOW, [], 0, 0
    for _ in range(300):
        op = rng.choice(["reserve", "reserve", "settle", "tick"])
        if op == "reserve":
            estimate = rng.randint(0, 120_000_000)
            try:
                held.append(store.reserve(ONE, estimate / 1e9, now))
                expected += estimate
            except BudgetExceeded:
                refused += 1
                assert expected + estimate > 1_000_000_000 or expected >= 1_000_000_000
        elif op == "settle" and held:
            reservation = held.pop(rng.randrange(len(held)))
            estimate = round(reservation.estimate_usd * 1e9)
            actual = rng.randint(0, estimate)
            store.settle(reservation, actual / 1e9, now)
            expected += actual - estimate
        elif op == "tick" and now < NOW.replace(hour=23):
            now += timedelta(minutes=rng.choice([1, 4, 7]))
        assert round(store.spend(ONE, now).committed_usd * 1e9) == expected <= 1_000_000_000
    assert refused > 0  # the budget was binding


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_negative_or_missing_costs_are_refused(tmp_path, bad):
    store = BudgetStore(tmp_path / "b.sqlite")
    with pytest.raises(DataContractError, match="field estimate_usd"):
        store.reserve(BUDGET, bad, NOW)
    held = store.reserve(BUDGET, 0.1, NOW)
    with pytest.raises(DataContractError, match="field actual_usd"):
        store.settle(held, bad, NOW)


@pytest.mark.slow
def test_token_bucket_allows_the_rate_per_minute_under_contention(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    start = threading.Barrier(50)

    def caller() -> float:
        start.wait()
        return store.take_token("urgent-ae-triage", 30, NOW)

    with ThreadPoolExecutor(50) as pool:
        waits = list(pool.map(lambda _: caller(), range(50)))
    assert sum(w == 0.0 for w in waits) == 30
    assert min(w for w in waits if w > 0) == pytest.approx(2.0)  # 30/min: one token per 2 s
    assert store.take_token("urgent-ae-triage", 30, NOW + timedelta(seconds=1)) > 0
    assert store.take_token("urgent-ae-triage", 30, NOW + timedelta(seconds=2)) == 0.0
    # another workflow has its own bucket
    assert store.take_token("nightly-literature-scan", 30, NOW) == 0.0
