"""A reused case id never drops a real report: idempotency is per submitter and per payload.

The attack: submitter B posts id X (harmless), then A posts a death case under X and
was answered 200, ``Idempotent-Replay: true``, ``serious: false``: A's report was discarded.
The API tests run on both stores (``shared_database``).
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.errors import CaseConflict
from tasks.intake import IcsrCase
from tasks.io.triage_store import TriageStore
from tests.triage_app import REV, A, B, client, report

DEATH = {
    "outcome": {"death": True},
    "patient": {"initials": "ZQ", "age_years": 71, "sex": "M"},
    "narrative": "The patient was found dead at home two days after the first dose.",
}


@pytest.fixture
def api(tmp_path, shared_database):
    """The app over a store of each kind (SQLite under home, or PostgreSQL)."""
    client_, triager = client(tmp_path / "home")
    on_postgres = type(triager.store).__name__ == "PostgresTriageStore"
    assert on_postgres == (shared_database is not None)
    return client_, triager


def test_another_submitters_id_is_a_conflict_and_the_death_case_is_not_replayed(api):
    client_, triager = api
    harmless = client_.post("/cases", json=report("X-1"), headers=B)
    assert harmless.status_code == 200 and harmless.json()["serious"] is False

    death = client_.post("/cases", json=report("X-1", **DEATH), headers=A)

    assert death.status_code == 409, death.text
    assert "Idempotent-Replay" not in death.headers
    assert "X-1" in death.json()["detail"] and "case_id" in death.json()["detail"]
    assert "new case id" in death.json()["detail"]
    stored = triager.store.get("X-1")
    assert (stored.submitter, stored.decision) == ("k-b", triager.store.decision("X-1"))
    assert stored.decision.serious is False  # B's case is unchanged, not overwritten
    # A was told, so A's report is not lost: resent under a new id it is decided as serious
    resent = client_.post("/cases", json=report("X-1.A", **DEATH), headers=A)
    assert resent.status_code == 200
    assert (resent.json()["serious"], resent.json()["status"]) == (True, "held_for_review")


def test_another_submitter_sending_the_identical_report_under_a_known_id_is_a_conflict(api):
    client_, triager = api
    assert client_.post("/cases", json=report("X-2"), headers=B).status_code == 200
    same = client_.post("/cases", json=report("X-2"), headers=A)
    assert same.status_code == 409
    assert triager.store.count() == 1


def test_same_submitter_changed_report_under_the_same_id_is_a_conflict(api):
    client_, triager = api
    first = client_.post("/cases", json=report("X-3"), headers=A)
    changed = client_.post("/cases", json=report("X-3", **DEATH), headers=A)
    assert changed.status_code == 409
    assert "X-3" in changed.json()["detail"]
    assert triager.store.decision("X-3") == triager.store.decision("X-3", submitter="k-a")
    assert client_.get("/cases/X-3", headers=A).json() == first.json()


def test_same_submitter_same_report_replays_even_with_reordered_keys_and_padding(api):
    client_, triager = api
    first = client_.post("/cases", json=report("X-4"), headers=A)
    body = dict(reversed(list(report("X-4").items())))
    body["suspect_drugs"] = ["  Xanomeline "]  # stripped by the schema: the same report
    again = client_.post("/cases", json=body, headers=A)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replay"] == "true"
    assert again.json() == first.json()
    assert triager.store.count() == 1


def test_a_submitter_reads_only_its_own_cases_and_a_reviewer_reads_all(api):
    client_, _ = api
    client_.post("/cases", json=report("X-5"), headers=B)
    theirs = client_.get("/cases/X-5", headers=A)
    missing = client_.get("/cases/NOPE-1", headers=A)
    assert theirs.status_code == 404  # not 403: another submitter's ids do not leak
    assert theirs.json() == missing.json()
    assert client_.get("/cases/X-5", headers=B).status_code == 200
    assert client_.get("/cases/X-5", headers=REV).status_code == 200


def test_racing_submitters_on_one_id_store_exactly_one_and_the_other_is_told(api):
    _, triager = api
    cases = {
        "k-a": IcsrCase.model_validate(report("X-6", **DEATH)),
        "k-b": IcsrCase.model_validate(report("X-6")),
    }
    start = threading.Barrier(8)

    def submit(submitter: str):
        start.wait()
        try:
            return triager.triage(cases[submitter], submitter)
        except CaseConflict:
            return "conflict"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, ["k-a", "k-b"] * 4))
    winner = triager.store.get("X-6").submitter
    loser = "k-b" if winner == "k-a" else "k-a"
    assert triager.store.count() == 1
    assert [r for r, s in zip(results, ["k-a", "k-b"] * 4, strict=True) if s == loser] == [
        "conflict"
    ] * 4
    created = [r[1] for r, s in zip(results, ["k-a", "k-b"] * 4, strict=True) if s == winner]
    assert sorted(created) == [False, False, False, True]


# the cases table as the first release created it: no submitter, no payload digest
OLD_DDL = """
CREATE TABLE cases (
    case_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, fingerprint TEXT NOT NULL,
    payload TEXT NOT NULL, decision TEXT NOT NULL, status TEXT NOT NULL,
    accepted_seq INTEGER NOT NULL, bookkept INTEGER NOT NULL DEFAULT 0, reviewer TEXT,
    review_reason TEXT, reviewed_at TEXT, review_bookkept INTEGER NOT NULL DEFAULT 0
);
"""


def test_a_store_from_before_submitters_is_migrated_not_broken(tmp_path):
    client_, triager = client(tmp_path / "first")
    answer = client_.post("/cases", json=report("OLD-1"), headers=A).json()
    row = (
        sqlite3.connect(triager.store.path)
        .execute(
            "SELECT case_id, received_at, fingerprint, payload, decision, status, accepted_seq"
            " FROM cases"
        )
        .fetchone()
    )
    # stores of that age kept the payload in the clear (before encryption at rest)
    clear = triager.store._unseal(row[3], row[0]).model_dump_json()
    row = (*row[:3], clear, *row[4:])
    home = tmp_path / "home"
    (home / "triage").mkdir(parents=True)
    old = sqlite3.connect(home / "triage" / "cases.sqlite")
    old.executescript(OLD_DDL)
    old.execute("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL, 0)", row)
    old.commit()
    old.close()

    client_, triager = client(home)  # opens (and migrates) the old file

    columns = {
        r[1] for r in sqlite3.connect(triager.store.path).execute("PRAGMA table_info(cases)")
    }
    assert {"submitter", "payload_sha256"} <= columns
    assert triager.store.count() == 1
    replay = client_.post("/cases", json=report("OLD-1"), headers=A)
    assert (replay.status_code, replay.headers["Idempotent-Replay"]) == (200, "true")
    assert replay.json() == answer
    assert client_.post("/cases", json=report("OLD-1", **DEATH), headers=A).status_code == 409
    assert client_.get("/cases/OLD-1", headers=A).status_code == 404  # owner unknown
    assert client_.get("/cases/OLD-1", headers=REV).json() == answer
    TriageStore(
        triager.store.path, triager.store.sealer
    )  # a second open finds nothing left to migrate
