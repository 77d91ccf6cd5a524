"""Four real processes (spawned) on one budget file: reserve, settle random actuals, repeat.

Reserve rounds race 4 x 25 calls for the same headroom; the number granted must be exactly
what the budget allows. Settle rounds book random actuals up to the estimate from every
process at once. After every operation each process reads the committed spend, and no reading
may pass the limit.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.errors import BudgetExceeded
from tasks.io.budget import NANO, BudgetStore, Reservation
from tasks.rules import Budget

PROCESSES, CALLS = 4, 25
BUDGET = Budget(workflow="escalation-lane", period="day", usd=1.0, on_exhaustion="defer")
LIMIT = NANO  # $1.00 in nano-dollars
ESTIMATE = 40_000_000  # $0.04: 25 holds fit in $1.00, the 26th does not


def now() -> datetime:
    return datetime.now(UTC)


def _reserve_round(store: BudgetStore, seen: list[int]) -> list[Reservation]:
    granted = []
    for _ in range(CALLS):
        with contextlib.suppress(BudgetExceeded):
            granted.append(store.reserve(BUDGET, ESTIMATE / NANO, now()))
        seen.append(round(store.spend(BUDGET, now()).committed_usd * NANO))
    return granted


def _settle_round(
    store: BudgetStore, held: list[Reservation], rng: random.Random, seen: list[int]
) -> int:
    booked = 0
    for reservation in held:
        actual = rng.randint(0, ESTIMATE)
        store.settle(reservation, actual / NANO, now())
        booked += actual
        seen.append(round(store.spend(BUDGET, now()).committed_usd * NANO))
    return booked


def _interleaved_round(store: BudgetStore, rng: random.Random, seen: list[int]) -> list[int]:
    """25 calls as a lane makes them: reserve, (call), settle at a random actual."""
    actuals = []
    for _ in range(CALLS):
        try:
            held = store.reserve(BUDGET, ESTIMATE / NANO, now())
        except BudgetExceeded:
            seen.append(round(store.spend(BUDGET, now()).committed_usd * NANO))
            continue
        actual = rng.randint(0, ESTIMATE)
        store.settle(held, actual / NANO, now())
        actuals.append(actual)
        seen.append(round(store.spend(BUDGET, now()).committed_usd * NANO))
    return actuals


def worker(path: str, seed: int, barrier: Any, results: Any) -> None:
    """Two reserve rounds, each followed by a settle round, then an interleaved round."""
    store, rng, seen = BudgetStore(Path(path)), random.Random(seed), []
    report: dict[str, Any] = {"seed": seed}
    for round_ in ("first", "second"):
        barrier.wait()
        held = _reserve_round(store, seen)
        report[f"{round_}_granted"] = len(held)
        barrier.wait()
        report[f"{round_}_booked"] = _settle_round(store, held, rng, seen)
    barrier.wait()
    report["interleaved"] = _interleaved_round(store, rng, seen)
    report["seen"] = seen
    results.put(report)


def test_four_processes_never_overspend_and_get_exactly_what_the_budget_allows(tmp_path):
    path = tmp_path / "budget.sqlite"
    BudgetStore(path)  # schema first: the processes race on money only
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(PROCESSES, timeout=300), spawn.Queue()
    procs = [
        spawn.Process(target=worker, args=(str(path), seed, barrier, results))
        for seed in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    # round one: 100 calls race for $1.00 at $0.04 each: exactly 25 granted
    assert sum(r["first_granted"] for r in reports) == LIMIT // ESTIMATE == 25
    first_booked = sum(r["first_booked"] for r in reports)
    # round two: what the random actuals left, and not one hold more
    assert sum(r["second_granted"] for r in reports) == (LIMIT - first_booked) // ESTIMATE
    booked = first_booked + sum(r["second_booked"] for r in reports)
    interleaved = [a for r in reports for a in r["interleaved"]]
    assert len(interleaved) < PROCESSES * CALLS  # the budget was binding here too
    seen = [s for r in reports for s in r["seen"]]
    assert len(seen) > 3 * PROCESSES * CALLS
    assert max(seen) <= LIMIT

    spend = BudgetStore(path).spend(BUDGET, now())
    total = booked + sum(interleaved)
    assert round(spend.settled_usd * NANO) == round(spend.committed_usd * NANO) == total
    assert total <= LIMIT
    assert (spend.open_reservations, spend.lapsed_reservations) == (0, 0)
    assert (spend.overrides, spend.overages) == (0, 0)
