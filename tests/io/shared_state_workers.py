"""Worker processes of ``test_shared_state_contract.py`` (spawned: importable top-level code)."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.errors import BudgetExceeded
from tasks.io.budget import NANO, Budgets
from tasks.io.shared_state import open_budgets
from tasks.rules import Budget
from tasks.services.triage_access import Gate
from tasks.settings import ApiKey, TriageSettings, load_settings

BUDGET = Budget(workflow="escalation-lane", period="day", usd=1.0, on_exhaustion="defer")
LIMIT = NANO  # $1.00 in nano-dollars
ESTIMATE = 40_000_000  # $0.04: 25 holds fit in $1.00, the 26th does not
TTL = timedelta(minutes=5)
SALT, KEY = "contract-salt", "key-a"


def budgets(url: str | None, home: str) -> Budgets:
    return open_budgets(url, Path(home) / "budget.sqlite", reservation_ttl=TTL)


def now() -> datetime:
    return datetime.now(UTC)


def _committed(store: Budgets) -> int:
    return round(store.spend(BUDGET, now()).committed_usd * NANO)


def _caller(store: Budgets, seed: int, barrier: Any, out: dict[str, Any]) -> None:
    """One caller: a raced first reserve, its settle, then reserve-call-settle three times."""
    rng, seen, actuals = random.Random(seed), [], []
    barrier.wait()
    held = None
    with contextlib.suppress(BudgetExceeded):
        held = store.reserve(BUDGET, ESTIMATE / NANO, now())
    seen.append(_committed(store))
    barrier.wait()  # every caller has tried once: exactly what fits was granted
    for attempt in range(4):
        if attempt:
            try:
                held = store.reserve(BUDGET, ESTIMATE / NANO, now())
            except BudgetExceeded:
                held = None
        if held is not None:
            actuals.append(rng.randint(0, ESTIMATE))
            store.settle(held, actuals[-1] / NANO, now())
        seen.append(_committed(store))
        if attempt == 0:
            out["first_granted"] = held is not None
    out.update(seen=seen, actuals=actuals)


def budget_callers(
    url: str | None, home: str, seeds: list[int], barrier: Any, results: Any
) -> None:
    """Callers as threads of one process, sharing the process's store (as a Runtime does)."""
    store = budgets(url, home)
    outs: list[dict[str, Any]] = [{} for _ in seeds]
    threads = [
        threading.Thread(target=_caller, args=(store, seed, barrier, out))
        for seed, out in zip(seeds, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(outs)


def killed_caller(url: str | None, home: str, actuals: list[int], ready: Any) -> None:
    """Settle a few calls, then hold one more and hang in the 'call' until killed."""
    store = budgets(url, home)
    for actual in actuals:
        store.settle(store.reserve(BUDGET, ESTIMATE / NANO, now()), actual / NANO, now())
    store.reserve(BUDGET, ESTIMATE / NANO, now())
    ready.set()
    time.sleep(600)  # the parent kills this process here


def intake_settings(url: str | None, home: str, rate_per_minute: int) -> Any:
    from tasks.services.triage_access import hash_key

    key = ApiKey(key_id="k-a", sha256=hash_key(SALT, KEY), role="submitter")
    triage = TriageSettings(api_keys=[key], key_salt=SALT, rate_per_minute=rate_per_minute)
    extra = {} if url is None else {"database_url": url}
    return load_settings(home=Path(home), triage=triage, **extra)


def intake_replica(
    url: str | None,
    home: str,
    rate_per_minute: int,
    tries: int,
    clock: float,
    barrier: Any,
    results: Any,
) -> None:
    """One intake replica's gate, hammering one key's bucket at a fixed instant."""
    gate = Gate(intake_settings(url, home, rate_per_minute), SALT, lambda: clock)
    barrier.wait()
    results.put(sum(isinstance(gate.check("10.0.0.1", KEY), ApiKey) for _ in range(tries)))


AUDIT_KEY = b"k" * 32


def audit_appender(
    url: str | None, folder: str, writer: int, count: int, barrier: Any, results: Any
) -> None:
    """Append ``count`` entries one at a time to the shared trail, racing the other writer."""
    from tasks.io.shared_state import open_audit_trail

    trail = open_audit_trail(url, Path(folder), AUDIT_KEY)
    barrier.wait()
    for n in range(count):
        trail.append([{"event": "test", "writer": writer, "n": n}], now=now())
    results.put(count)


def inbox_resolver(
    url: str | None, home: str, key: bytes, reviewer: str, barrier: Any, results: Any
) -> None:
    """One reviewer (a process of its own) resolving the one open item at the same moment."""
    from tasks.errors import AlreadyResolved
    from tasks.io.sealing import Sealer
    from tasks.io.shared_state import open_inbox

    inbox = open_inbox(url, Path(home) / "inbox.sqlite", Sealer([key]))
    barrier.wait()
    try:
        inbox.resolve(
            "literature:1", outcome="not_icsr", reviewer=reviewer, reason_sha256="h", at=now()
        )
        results.put(reviewer)
    except AlreadyResolved:
        results.put("refused")


def code_redeemers(
    url: str | None, home: str, digest: str, names: list[str], barrier: Any, results: Any
) -> None:
    """Redeemers (threads of one process) spending one review code at the same moment; each
    answers its name when it got the code, else the refusal code."""
    from tasks.errors import PolicyDenied
    from tasks.io.shared_state import open_review_codes

    store, answers = open_review_codes(url, Path(home) / "review_codes.sqlite"), []

    def redeem(name: str) -> None:
        barrier.wait()
        try:
            store.redeem(digest, item_id="literature:1", now=now())
            answers.append(name)
        except PolicyDenied as refused:
            answers.append(refused.code)

    threads = [threading.Thread(target=redeem, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(answers)
