"""One-time review codes: what a reviewer types into the Prefect UI form instead of a key.

Prefect keeps every run input in its own database, so the review form must never ask for a
long-lived API key. A reviewer exchanges their key (API or CLI) for a short code that is valid
for one inbox item and a few minutes, and works once.

Invariants:

* a code is stored only as sha256(salt + code), with the item it is for, the key id and the
  role of the key that obtained it, and its expiry: the file never holds a usable code;
* ``redeem`` reads and marks the code used inside one ``BEGIN IMMEDIATE`` transaction, so a
  code redeemed by two runs at once works for exactly one of them;
* each form answer a review run judged is recorded by (run, attempt) with its result code, so
  a resumed run, which Prefect executes again from its start, replays its earlier answers from
  here instead of judging them twice (a spent code would read as "used");
* a refused code is left as it was (a code typed into the wrong item's form still works on its
  own item until it expires); only a redeemed code is spent.

``ReviewCodeStore`` is the interface; ``SqliteReviewCodes`` is the embedded one, next to the
inbox under PHARMALANE_HOME, and ``PostgresReviewCodes`` (review_codes_pg.py) the shared one,
chosen by ``PHARMALANE_DATABASE_URL`` (``tasks/io/shared_state.open_review_codes``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from tasks.errors import PolicyDenied
from tasks.io.private_files import private_sqlite
from tasks.io.sqlite_wal import durable_connection, enable_wal

_DDL = """
CREATE TABLE IF NOT EXISTS codes (
    code_sha256 TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    role TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    flow_run_id TEXT NOT NULL,
    attempt TEXT NOT NULL,
    item_id TEXT NOT NULL,
    result TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, attempt)
);
"""
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class IssuedCode:
    """What the store keeps of a code: never the code itself."""

    item_id: str
    key_id: str
    role: str
    expires_at: datetime


def code_digest(salt: str, code: str) -> str:
    """How a code is stored: sha256 of the deployment's key salt and the code, hex."""
    return hashlib.sha256((salt + code).encode("utf-8")).hexdigest()


class ReviewCodeStore(Protocol):
    """What review codes need from a database."""

    def issue(self, digest: str, code: IssuedCode, *, now: datetime) -> None: ...

    def redeem(self, digest: str, *, item_id: str, now: datetime) -> IssuedCode: ...

    def record_attempt(
        self, flow_run_id: str, attempt: str, *, item_id: str, result: str, now: datetime
    ) -> str: ...

    def attempts(self, flow_run_id: str) -> dict[str, str]: ...


class SqliteReviewCodes:
    """Review codes in one SQLite file (WAL, synchronous=FULL), 0600 in a 0700 folder."""

    def __init__(self, path: Path):
        self.path = path
        private_sqlite(path)
        with self._connect() as con:
            enable_wal(con)
            con.executescript(_DDL)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return durable_connection(self.path)

    def issue(self, digest: str, code: IssuedCode, *, now: datetime) -> None:
        """Keep a new code's digest; codes lapsed over a day are forgotten on the way (a
        recently lapsed one is still told apart from one never issued)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            forget = (now - FORGET_AFTER).isoformat()
            con.execute("DELETE FROM codes WHERE expires_at < ?", (forget,))
            con.execute(
                "INSERT INTO codes (code_sha256, item_id, key_id, role, issued_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    code.item_id,
                    code.key_id,
                    code.role,
                    now.isoformat(),
                    code.expires_at.isoformat(),
                ),
            )
            con.execute("COMMIT")

    def redeem(self, digest: str, *, item_id: str, now: datetime) -> IssuedCode:
        """Spend the code for ``item_id``: it works once, for its item, before it expires.

        Raises:
            PolicyDenied: REVIEW_CODE_UNKNOWN, REVIEW_CODE_USED, REVIEW_CODE_EXPIRED,
                REVIEW_CODE_OTHER_ITEM or REVIEW_CODE_NOT_REVIEWER; the code is left unspent.
        """
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute(
                "SELECT item_id, key_id, role, expires_at, used_at FROM codes"
                " WHERE code_sha256 = ?",
                (digest,),
            ).fetchone()
            issued = issued_of_row(row)
            problem = refusal(issued, row[4] if row else None, item_id, now)
            if problem is not None:
                con.execute("ROLLBACK")
                raise problem
            con.execute(
                "UPDATE codes SET used_at = ? WHERE code_sha256 = ?", (now.isoformat(), digest)
            )
            con.execute("COMMIT")
        assert issued is not None
        return issued

    def record_attempt(
        self, flow_run_id: str, attempt: str, *, item_id: str, result: str, now: datetime
    ) -> str:
        """Record how a run judged one form answer; the first record stands (returned)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "INSERT OR IGNORE INTO attempts (flow_run_id, attempt, item_id, result, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (flow_run_id, attempt, item_id, result, now.isoformat()),
            )
            row = con.execute(
                "SELECT result FROM attempts WHERE flow_run_id = ? AND attempt = ?",
                (flow_run_id, attempt),
            ).fetchone()
            con.execute("COMMIT")
        return str(row[0])

    def attempts(self, flow_run_id: str) -> dict[str, str]:
        """Every form answer ``flow_run_id`` judged: attempt key -> result code."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT attempt, result FROM attempts WHERE flow_run_id = ?", (flow_run_id,)
            ).fetchall()
        return {str(a): str(r) for a, r in rows}


def issued_of_row(row: tuple[str, str, str, str, str | None] | None) -> IssuedCode | None:
    """The code a stored row (item, key id, role, expires_at, used_at) describes, if any."""
    if row is None:
        return None
    return IssuedCode(row[0], row[1], row[2], datetime.fromisoformat(row[3]))


def refusal(
    issued: IssuedCode | None, used_at: str | None, item_id: str, now: datetime
) -> PolicyDenied | None:
    """Why a presented code may not resolve ``item_id``, or None when it may."""
    if issued is None:
        return PolicyDenied("REVIEW_CODE_UNKNOWN", "this is not a review code pharmalane issued")
    if used_at is not None:
        return PolicyDenied("REVIEW_CODE_USED", "this review code was used before")
    if issued.expires_at <= now:
        return PolicyDenied("REVIEW_CODE_EXPIRED", "this review code has expired")
    if issued.item_id != item_id:
        return PolicyDenied("REVIEW_CODE_OTHER_ITEM", "this review code is for another item")
    if issued.role != "reviewer":
        return PolicyDenied(
            "REVIEW_CODE_NOT_REVIEWER",
            f"this review code was obtained with a {issued.role} key, not a reviewer key",
        )
    return None
