"""The shared-state contract, run on both stores: embedded SQLite and a real PostgreSQL.

The same spawned processes race on one store, chosen as production chooses it
(``PHARMALANE_DATABASE_URL`` set or not): 50 callers in 4 processes never overspend a budget;
two intake replicas enforce one rate limit between them; a killed caller's hold lapses and
still counts, and the budget's settled spend is exactly what the callers booked.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from models.llm import ChatResult
from tasks.errors import DataContractError, PolicyDenied
from tasks.io.budget import NANO
from tasks.io.call_journal import call_key
from tasks.io.review_codes import IssuedCode, code_digest
from tasks.io.sealing import Sealer
from tasks.io.shared_state import (
    open_audit_trail,
    open_inbox,
    open_journal,
    open_literature_state,
    open_review_codes,
)
from tasks.schemas import InboxItem
from tests.io import shared_state_workers as w

SPAWN = multiprocessing.get_context("spawn")
LIMIT_HOLDS = w.LIMIT // w.ESTIMATE  # 25 holds of $0.04 fit in $1.00
CALLERS = [list(range(0, 13)), list(range(13, 26)), list(range(26, 38)), list(range(38, 50))]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> tuple[str | None, str]:
    """(database URL or None, home): one store of each kind, empty."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return url, str(tmp_path / "home")


def _run(target, args_per_process, *, results):
    procs = [SPAWN.Process(target=target, args=args) for args in args_per_process]
    for proc in procs:
        proc.start()
    gathered, deadline = [], time.monotonic() + 240
    while len(gathered) < len(procs) and time.monotonic() < deadline:
        try:
            gathered.append(results.get(timeout=1))
        except queue.Empty:  # a worker that died says so now, not at the deadline
            assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
    assert len(gathered) == len(procs), "a worker did not report within 240 s"
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return gathered


def test_fifty_callers_in_four_processes_never_overspend(store):
    url, home = store
    w.budgets(url, home)  # schema first: the processes race on money only
    barrier, results = SPAWN.Barrier(50, timeout=240), SPAWN.Queue()
    outs = [
        out
        for batch in _run(
            w.budget_callers, [(url, home, s, barrier, results) for s in CALLERS], results=results
        )
        for out in batch
    ]
    assert len(outs) == 50
    # 50 callers race for $1.00 at $0.04 each: exactly 25 holds fit
    assert sum(o["first_granted"] for o in outs) == LIMIT_HOLDS
    seen = [s for o in outs for s in o["seen"]]
    assert len(seen) == 50 * 5 and max(seen) <= w.LIMIT
    spend = w.budgets(url, home).spend(w.BUDGET, w.now())
    booked = sum(a for o in outs for a in o["actuals"])
    assert round(spend.settled_usd * NANO) == round(spend.committed_usd * NANO) == booked
    assert booked <= w.LIMIT
    assert (spend.open_reservations, spend.lapsed_reservations, spend.overages) == (0, 0, 0)


def test_two_intake_replicas_enforce_one_rate_limit(store):
    url, home = store
    barrier, results = SPAWN.Barrier(2, timeout=240), SPAWN.Queue()
    args = [(url, home, 20, 30, 1_000_000.0, barrier, results) for _ in range(2)]
    granted = _run(w.intake_replica, args, results=results)
    # 60 requests at one instant against 20/min: 20 granted in all, not 20 per replica
    assert sum(granted) == 20
    assert all(g < 30 for g in granted)


def test_a_killed_callers_hold_expires_and_spend_matches_the_ledger(store):
    url, home = store
    ledger = [7_000_000, 33_000_000]  # what the caller booked before it died
    ready = SPAWN.Event()
    caller = SPAWN.Process(target=w.killed_caller, args=(url, home, ledger, ready))
    caller.start()
    assert ready.wait(timeout=240)
    caller.kill()  # mid-call: its hold is never settled
    caller.join(timeout=60)
    budgets = w.budgets(url, home)
    during = budgets.spend(w.BUDGET, w.now())
    assert (during.open_reservations, during.lapsed_reservations) == (1, 0)

    after = budgets.spend(w.BUDGET, w.now() + w.TTL + timedelta(seconds=1))
    assert (after.open_reservations, after.lapsed_reservations) == (0, 1)
    assert round(after.settled_usd * NANO) == sum(ledger)  # the ledger, to the nano-dollar
    assert round(after.lapsed_usd * NANO) == w.ESTIMATE  # time never frees money
    assert round(after.committed_usd * NANO) == sum(ledger) + w.ESTIMATE


def test_throttle_bucket_and_paid_call_journal_are_shared_by_two_openers(store, tmp_path):
    url, home = store
    at = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    first, second = w.budgets(url, home), w.budgets(url, home)  # two openers, one store
    waits = [s.take_token("escalation-lane", 2, at) for s in (first, second, first)]
    assert waits == [0.0, 0.0, pytest.approx(30.0)]  # 2/min: the third waits 30 s

    path = tmp_path / "home" / "calls.sqlite"
    answer = ChatResult("{}", 120, 40, "m", "stop", None, "local-qwen")
    key = call_key("local-qwen", [{"role": "user", "content": "x"}], None, 384)
    open_journal(url, path).put(key, answer, at)
    open_journal(url, path).put(key, ChatResult("other", 1, 1, "m"), at)  # never overwrites
    reopened = open_journal(url, path)
    assert (reopened.get(key), reopened.count()) == (answer, 1)
    assert reopened.prune(at + timedelta(days=3), keep=timedelta(days=2)) == 1
    assert reopened.get(key) is None


def test_two_processes_append_one_unbroken_audit_chain(store, tmp_path):
    url, _ = store
    folder = str(tmp_path / "audit")
    barrier, results = SPAWN.Barrier(2, timeout=240), SPAWN.Queue()
    args = [(url, folder, writer, 15, barrier, results) for writer in range(2)]
    assert _run(w.audit_appender, args, results=results) == [15, 15]
    trail = open_audit_trail(url, tmp_path / "audit", w.AUDIT_KEY)
    verification = trail.verify()
    assert (verification.ok, verification.entries) == (True, 30), verification
    assert {(e["writer"], e["n"]) for e in trail.entries()} == {
        (writer, n) for writer in range(2) for n in range(15)
    }


def _inbox_item(source_id: str, kind: str = "literature", priority: int = 3) -> InboxItem:
    return InboxItem(
        item_id=f"{kind}:{source_id}",
        kind=kind,
        source_id=source_id,
        source="escalation-lane",
        reason="case_candidate",
        day_zero=date(2026, 11, 30),
        clock_days=15,
        due_date=date(2026, 12, 15),
        priority=priority,
        evidence={"abstract": "Acute renal failure after cisplatin in a 54-year-old woman."},
    )


def test_review_inbox_adds_once_and_the_first_of_four_reviewers_wins(store, tmp_path):
    url, home = store
    key = Fernet.generate_key()
    inbox = open_inbox(url, tmp_path / "home" / "inbox.sqlite", Sealer([key]))
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    items = [_inbox_item("1"), _inbox_item("1", "triage", 1), _inbox_item("2")]
    assert inbox.add(items, now=at) == 3
    assert inbox.add(items, now=at) == 0  # again: nothing added, nothing reopened
    assert inbox.known(["literature:1", "literature:9"]) == {"literature:1"}
    assert inbox.unscheduled() == ["triage:1", "literature:1", "literature:2"]
    inbox.mark_scheduled(["triage:1"], flow_run_id="run-1", at=at)
    inbox.mark_scheduled(["triage:1"], flow_run_id="run-2", at=at)
    assert inbox.unscheduled() == ["literature:1", "literature:2"]
    assert inbox.withdraw(["literature:2", "literature:9"], by="nlm", at=at) == ["literature:2"]
    with pytest.raises(DataContractError, match="several items"):
        inbox.find("1")

    barrier, results = SPAWN.Barrier(4, timeout=240), SPAWN.Queue()
    args = [(url, home, key, f"r{i}", barrier, results) for i in range(4)]
    answers = sorted(_run(w.inbox_resolver, args, results=results))
    assert answers.count("refused") == 3
    winner = next(a for a in answers if a != "refused")
    found = inbox.find("literature:1")
    assert (found.status, found.reviewer, found.evidence) == ("resolved", winner, items[0].evidence)
    assert [i.item_id for i in inbox.items(status="open")] == ["triage:1"]
    assert len(inbox.items(status=None)) == 3
    counts = [inbox.count(), *(inbox.count(status=s) for s in ("resolved", "withdrawn", "x"))]
    assert counts == [1, 1, 1, 0]


def test_a_review_code_is_spent_once_by_eight_redeemers_and_the_first_judgement_stands(store):
    url, home = store
    codes = open_review_codes(url, Path(home) / "review_codes.sqlite")
    at = datetime.now(UTC)
    issued = IssuedCode("literature:1", "key-r", "reviewer", at + timedelta(minutes=15))
    digest = code_digest("salt", "AAAAA11111")
    codes.issue(digest, issued, now=at)
    with pytest.raises(PolicyDenied, match="REVIEW_CODE_OTHER_ITEM"):
        codes.redeem(digest, item_id="literature:2", now=at)  # refused: left unspent

    barrier, results = SPAWN.Barrier(8, timeout=240), SPAWN.Queue()
    names = [[f"r{i}" for i in range(4)], [f"r{i}" for i in range(4, 8)]]
    args = [(url, home, digest, n, barrier, results) for n in names]
    answers = sorted(a for batch in _run(w.code_redeemers, args, results=results) for a in batch)
    winners = [a for a in answers if a != "REVIEW_CODE_USED"]
    assert len(answers) == 8 and len(winners) == 1 and winners[0] in {f"r{i}" for i in range(8)}

    first = codes.record_attempt("run-1", "a1", item_id="literature:1", result="RESOLVED", now=at)
    again = codes.record_attempt("run-1", "a1", item_id="literature:1", result="USED", now=at)
    assert (first, again) == ("RESOLVED", "RESOLVED")
    codes.record_attempt("run-1", "a2", item_id="literature:1", result="USED", now=at)
    assert codes.attempts("run-1") == {"a1": "RESOLVED", "a2": "USED"}
    assert codes.attempts("run-2") == {}


def test_literature_watermarks_move_forward_only_and_first_seen_is_written_once(store):
    url, home = store
    path = Path(home) / "literature" / "state.sqlite"
    state, other = open_literature_state(url, path), open_literature_state(url, path)
    day0, later = datetime(2026, 12, 1, 2, tzinfo=UTC), datetime(2026, 12, 4, 2, tzinfo=UTC)
    assert state.watermark("pubmed-query", "aspirin") is None
    assert state.advance("pubmed-query", "aspirin", "2021-03-02", day0) == "2021-03-02"
    # a late writer elsewhere cannot move it back; update file names sort the same way
    assert other.advance("pubmed-query", "aspirin", "2021-03-01", later) == "2021-03-02"
    assert other.advance("medline-updates", "files", "pubmed26n1201.xml.gz", day0) == (
        "pubmed26n1201.xml.gz"
    )
    assert state.advance("medline-updates", "files", "pubmed26n1199.xml.gz", later) == (
        "pubmed26n1201.xml.gz"
    )
    assert state.watermark("pubmed-query", "heparin") is None
    assert state.first_seen(["1", "2"], day0) == {"1": day0, "2": day0}
    assert other.first_seen(["2", "3"], later) == {"2": day0, "3": later}
    assert other.known(["1", "3", "9"]) == {"1", "3"}
    many = [str(i) for i in range(1200)]
    assert len(state.first_seen(many, later)) == 1200
