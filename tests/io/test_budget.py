"""Budget reservations and throttles on a real SQLite file, raced by threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.errors import BudgetExceeded, DataContractError
from tasks.io.budget import BudgetStore, Reservation
from tasks.settings import Budget

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


def test_settle_books_actual_above_estimate_and_then_refuses(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite")
    held = store.reserve(BUDGET, 1.0, NOW)
    store.settle(held, 4.5, NOW)
    with pytest.raises(BudgetExceeded, match=r"nightly-literature-scan.*defer"):
        store.reserve(BUDGET, 0.6, NOW)
    assert store.reserve(BUDGET, 0.5, NOW).estimate_usd == 0.5
    with pytest.raises(DataContractError, match=rf"record {held.id}, field id"):
        store.settle(held, 1.0, NOW)


def test_next_period_has_a_fresh_budget_and_stale_reservations_expire(tmp_path):
    store = BudgetStore(tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=5))
    held = store.reserve(BUDGET, 5.0, NOW)
    with pytest.raises(BudgetExceeded):
        store.reserve(BUDGET, 0.01, NOW + timedelta(minutes=4))
    # the caller died: after the TTL the hold is released
    assert store.reserve(BUDGET, 0.01, NOW + timedelta(minutes=5)).estimate_usd == 0.01
    # a late settle still books what was spent
    store.settle(held, 2.0, NOW + timedelta(minutes=6))
    assert store.spend(BUDGET, NOW).committed_usd == pytest.approx(2.01)
    tomorrow = NOW + timedelta(days=1)
    assert store.spend(BUDGET, tomorrow).committed_usd == 0.0
    assert store.reserve(BUDGET, 5.0, tomorrow).period_start == datetime(2026, 11, 23, tzinfo=UTC)


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
