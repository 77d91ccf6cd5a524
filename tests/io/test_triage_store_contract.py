"""The triage store's contract, run on both stores: embedded SQLite and a real PostgreSQL.

Two API replicas (spawned processes) posting one case id at once store one case; the case
never reaches the database in the clear; a key rotation reseals every row and leaves no copy
under the old key in the table's files; of four reviewers exactly one records a verdict; and
the lane's queue (pending, bookkept, deferred, settled, links, review bookkeeping) reads the
same on both.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Barrier

import psycopg
import pytest
from cryptography.fernet import Fernet

from tasks.errors import ConfigError, DataContractError
from tasks.io.sealing import KEYS_ENV, key_id
from tasks.io.triage_store import TriageCases
from tests.io import triage_store_workers as w

SPAWN = multiprocessing.get_context("spawn")
KEY_A, KEY_B, KEY_C = (Fernet.generate_key() for _ in range(3))
SECRETS = (b"Quetzalia", b"Brightwater", b"infusion", b"QZB")
AT = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request, tmp_path) -> tuple[str | None, str]:
    """(database URL or None, home): one empty store of each kind."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return url, str(tmp_path / "home")


def put(store: TriageCases, case_id: str, **decided) -> None:
    store.accept(w.case(case_id), f"fp-{case_id}", w.decision(case_id, **decided), submitter="k-a")


def on_disk(url: str | None, home: str, *, wal: bool = True) -> bytes:
    """What a reader of the server's disk sees of the cases: the table's (and its TOAST
    table's) files after a checkpoint, and the write-ahead log; for SQLite the file and its
    -wal. Files are read as the test's user (root in CI, as the cluster's owner otherwise)."""
    if url is None:
        db = Path(home) / "triage" / "cases.sqlite"
        files = [db, db.with_name(db.name + "-wal")] if wal else [db]
        return b"".join(p.read_bytes() for p in files if p.exists())
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CHECKPOINT")
        data = Path(str(con.execute("SHOW data_directory").fetchone()[0]))
        rels = con.execute(
            "SELECT pg_relation_filepath(c.oid), pg_relation_filepath(c.reltoastrelid)"
            " FROM pg_class c WHERE c.relname = 'triage_cases'"
        ).fetchone()
    files = [data / r for r in rels if r]
    if wal:
        files += sorted((data / "pg_wal").glob("0*"))
    return b"".join(p.read_bytes() for p in files if p.is_file())


def test_two_replicas_posting_one_case_id_store_one_case(where):
    url, home = where
    w.store(url, home, [KEY_A])  # schema first: the replicas race on the case only
    barrier, results = SPAWN.Barrier(2 * w.THREADS, timeout=120), SPAWN.Queue()
    procs = [
        SPAWN.Process(target=w.replica, args=(url, home, [KEY_A], r, barrier, results))
        for r in (0, 1)
    ]
    for proc in procs:
        proc.start()
    outs, deadline = [], time.monotonic() + 180
    while len(outs) < 2 * w.THREADS and time.monotonic() < deadline:
        try:
            outs += results.get(timeout=1)
        except queue.Empty:
            assert all(p.exitcode in (None, 0) for p in procs), [p.exitcode for p in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    store = w.store(url, home, [KEY_A])
    assert store.count() == 1
    winner = 0 if store.get("DUP-1").submitter == "k-a" else 1
    assert sorted(o[1] for o in outs if o[0] == winner) == ["created"] + ["replayed"] * 3
    assert [o[1] for o in outs if o[0] != winner] == ["conflict"] * w.THREADS


def test_no_case_text_reaches_the_database_in_the_clear(where):
    url, home = where
    store = w.store(url, home, [KEY_A])
    for n in range(3):
        put(store, f"C-{n}")
    store.link("C-0", "C-1", kind="possible_follow_up", score=0.9)
    seen = on_disk(url, home)
    assert b"C-1" in seen  # the reader does see the table: ids and codes are in the clear
    for secret in SECRETS:
        assert secret not in seen
    assert store.get("C-2").case == w.case("C-2")


def test_rotation_reseals_every_row_and_the_old_key_then_opens_nothing(where):
    url, home = where
    put(w.store(url, home, [KEY_A]), "C-1")
    put(w.store(url, home, [KEY_A]), "C-2")

    rotated = w.store(url, home, [KEY_B, KEY_A])
    assert rotated.get("C-1") is not None  # old rows still read during the rotation window
    put(rotated, "C-3")  # new rows are sealed with the new key already
    result = rotated.reseal(batch=2)  # two batches
    assert (result.resealed, result.already_current) == (2, 1)
    assert rotated.reseal().resealed == 0  # idempotent

    assert f"pl1:{key_id(KEY_A)}:".encode() not in on_disk(url, home, wal=False)
    with pytest.raises(ConfigError, match=f"{key_id(KEY_B)}.*not in {KEYS_ENV}"):
        w.store(url, home, [KEY_A])
    with pytest.raises(ConfigError, match=KEYS_ENV):
        w.store(url, home, [KEY_C])
    only_b = w.store(url, home, [KEY_B])
    assert [only_b.get(c).case.case_id for c in ("C-1", "C-2", "C-3")] == ["C-1", "C-2", "C-3"]
    assert only_b.count() == 3


def test_of_four_reviewers_of_one_held_case_exactly_one_records_a_verdict(where):
    url, home = where
    put(w.store(url, home, [KEY_A]), "H-1")
    start = Barrier(4)

    def review(n: int) -> str:
        own = w.store(url, home, [KEY_A])  # each its own connection, as two hosts would
        start.wait()
        try:
            own.review("H-1", verdict="accepted", reviewer=f"r{n}", reason="checked", at=AT)
        except DataContractError:
            return "refused"
        return f"r{n}"

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(review, range(4)))
    store = w.store(url, home, [KEY_A])
    winners = [o for o in outs if o != "refused"]
    assert len(winners) == 1 and store.get("H-1").reviewer == winners[0]
    assert [r["case_id"] for r in store.reviews_pending()] == ["H-1"]


def test_the_lanes_queue_reads_the_same_on_both_stores(where):
    url, home = where
    store = w.store(url, home, [KEY_A])
    put(store, "Q-1", status="deferred")
    put(store, "Q-2")
    put(store, "Q-3", status="accepted")
    assert [d.case_id for d in store.pending(10)] == ["Q-1", "Q-2", "Q-3"]
    store.mark_bookkept(["Q-1", "Q-3"])
    assert (store.count(), store.count(pending=True), store.count(status="deferred")) == (3, 1, 1)
    assert [c.case.case_id for c in store.deferred(10)] == ["Q-1"]
    assert store.settle(w.decision("Q-1", status="accepted", reason="BATCH"))
    assert not store.settle(w.decision("Q-1", status="rejected"))  # no longer deferred
    assert [d.case_id for d in store.pending(10)] == ["Q-1", "Q-2"]  # queued again
    assert store.decision("Q-1").reasons == ["BATCH"]
    assert store.decision("Q-1", submitter="k-b") is None
    assert [d.case_id for d in store.held()] == ["Q-2"]
    assert [(r[0], r[1]) for r in store.recent("fp-Q-2")] == [("Q-2", "fp-Q-2")]
    assert [c.case_id for c in store.recent_of("k-a", 2)] == ["Q-3", "Q-2"]
    store.link("Q-2", "Q-3", kind="possible_follow_up", score=0.8)
    store.link("Q-2", "Q-3", kind="possible_follow_up", score=0.9)
    assert store.links("Q-3") == [("Q-2", "possible_follow_up", 0.9)]
    with pytest.raises(DataContractError, match="not held"):
        store.review("Q-3", verdict="accepted", reviewer="r", reason="checked", at=AT)
    with pytest.raises(DataContractError, match="unknown"):
        store.review("NOPE", verdict="accepted", reviewer="r", reason="checked", at=AT)
    store.review("Q-2", verdict="rejected", reviewer="r", reason="not a case", at=AT)
    assert store.get("Q-2").reviewed_at == AT and store.held() == []
    store.mark_reviews_bookkept(["Q-2"])
    assert store.reviews_pending() == []
    assert [line.count('"case_id"') for line in store.dump().splitlines()] == [1, 1, 1]
