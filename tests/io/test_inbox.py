"""The review inbox store over a real SQLite file: idempotent adds, first resolution wins."""

from __future__ import annotations

import multiprocessing
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tasks.errors import AlreadyResolved, DataContractError
from tasks.io.inbox import SqliteInbox
from tasks.io.sealing import Sealer
from tasks.schemas import InboxItem

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEY = Fernet.generate_key()


def item(source_id: str, kind: str = "literature", due: date = date(2026, 12, 15)) -> InboxItem:
    return InboxItem(
        item_id=f"{kind}:{source_id}",
        kind=kind,
        source_id=source_id,
        source="escalation-lane",
        reason="case_candidate",
        day_zero=date(2026, 11, 30),
        clock_days=15,
        due_date=due,
        priority=3,
        evidence={"abstract": "Acute renal failure after cisplatin in a 54-year-old woman."},
    )


def test_adding_twice_adds_nothing_and_never_reopens(tmp_path):
    inbox = SqliteInbox(tmp_path / "inbox.sqlite", Sealer([KEY]))
    assert inbox.add([item("1"), item("2", due=date(2026, 12, 1))], now=NOW) == 2
    assert [i.item_id for i in inbox.items()] == ["literature:2", "literature:1"]  # due first
    inbox.resolve("literature:1", outcome="not_icsr", reviewer="dr-x", reason_sha256="h", at=NOW)
    assert inbox.add([item("1"), item("2")], now=NOW) == 0
    assert [i.item_id for i in inbox.items()] == ["literature:2"]
    assert inbox.find("1").outcome == "not_icsr"  # by source id when unambiguous


def test_known_looks_up_more_ids_than_one_query_holds(tmp_path):
    inbox = SqliteInbox(tmp_path / "inbox.sqlite", Sealer([KEY]))
    assert inbox.add([item(str(n)) for n in range(0, 1300, 2)], now=NOW) == 650
    asked = [f"literature:{n}" for n in range(1300)] + ["literature:0", "triage:2", "x'); --"]
    assert inbox.known(asked) == {f"literature:{n}" for n in range(0, 1300, 2)}
    assert inbox.known([]) == set()
    assert inbox.count() == 650


def test_evidence_is_sealed_at_rest_and_the_file_is_private(tmp_path):
    path = tmp_path / "inbox" / "items.sqlite"
    inbox = SqliteInbox(path, Sealer([KEY]))
    inbox.add([item("1")], now=NOW)
    on_disk = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"cisplatin" not in on_disk
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert inbox.find("literature:1").evidence["abstract"].startswith("Acute renal failure")
    with pytest.raises(Exception, match="not in PHARMALANE_DATA_KEYS"):
        SqliteInbox(path, Sealer([Fernet.generate_key()])).find("literature:1")


def test_a_second_resolution_is_refused_and_changes_nothing(tmp_path):
    inbox = SqliteInbox(tmp_path / "inbox.sqlite", Sealer([KEY]))
    inbox.add([item("1")], now=NOW)
    inbox.resolve("literature:1", outcome="confirmed_icsr", reviewer="a", reason_sha256="1", at=NOW)
    with pytest.raises(AlreadyResolved, match="confirmed_icsr by a"):
        inbox.resolve("literature:1", outcome="not_icsr", reviewer="b", reason_sha256="2", at=NOW)
    kept = inbox.find("literature:1")
    assert (kept.outcome, kept.reviewer, kept.reason_sha256) == ("confirmed_icsr", "a", "1")
    with pytest.raises(DataContractError, match="no inbox item"):
        inbox.resolve("literature:9", outcome="not_icsr", reviewer="b", reason_sha256="2", at=NOW)


def test_an_id_shared_by_two_kinds_must_be_named_in_full(tmp_path):
    inbox = SqliteInbox(tmp_path / "inbox.sqlite", Sealer([KEY]))
    inbox.add([item("101"), item("101", kind="triage")], now=NOW)
    with pytest.raises(DataContractError, match="several items"):
        inbox.find("101")
    assert inbox.find("triage:101").kind == "triage"


def _race(path: str, key: bytes, reviewer: str, start, results) -> None:
    inbox = SqliteInbox(Path(path), Sealer([key]))
    start.wait()
    try:
        inbox.resolve(
            "literature:1", outcome="not_icsr", reviewer=reviewer, reason_sha256="h", at=NOW
        )
        results.put(reviewer)
    except AlreadyResolved:
        results.put("refused")


def test_of_four_processes_resolving_at_once_exactly_one_wins(tmp_path):
    path = tmp_path / "inbox.sqlite"
    SqliteInbox(path, Sealer([KEY])).add([item("1")], now=NOW)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    workers = [
        ctx.Process(target=_race, args=(str(path), KEY, f"r{i}", start, results)) for i in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    answers = sorted(results.get(timeout=5) for _ in workers)
    assert answers.count("refused") == 3
    winner = next(a for a in answers if a != "refused")
    assert SqliteInbox(path, Sealer([KEY])).find("literature:1").reviewer == winner
