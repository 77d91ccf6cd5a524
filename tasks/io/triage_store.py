"""The triage lane's durable queue: one SQLite file in WAL mode under PHARMALANE_HOME.

A case is *accepted* when its row is committed (synchronous=FULL: on disk before the API
answers). The row is the idempotency key (case id), the decision of record, the human review,
and the lane's queue: ``bookkept = 0`` rows are what the Prefect lane has not yet written to
the lake. Nothing is deleted, so a restart (of the API or the lane) loses no accepted case.

Idempotency is per submitter and per payload. Invariant: a case id answers with its stored
decision only to the submitter who sent it, and only for the same report (sha256 of its
canonical JSON); any other report under a known id raises CaseConflict and changes nothing,
so a reused id can never make a real report vanish behind another's decision. The check and
the insert run in one ``BEGIN IMMEDIATE`` transaction, so two processes cannot both insert.

The case itself (narrative, patient, drugs) is stored sealed (tasks/io/sealing.py): the
``payload`` column holds ciphertext only, and the file, its folder and its -wal/-shm are
readable by their owner only. ``reseal`` moves every row to the newest data key.

``TriageCases`` is the interface; ``TriageStore`` is the embedded store, ``PostgresTriageStore``
(``tasks/io/triage_store_pg.py``, with ``PHARMALANE_DATABASE_URL``) the one every API replica
and lane of every host shares. Both refuse, replay and review through the functions below, so
they answer the same way.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tasks.errors import CaseConflict, DataContractError
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.private_files import private_sqlite
from tasks.io.sealing import Sealer
from tasks.io.sqlite_wal import durable_connection, enable_wal

_DDL = """
CREATE TABLE IF NOT EXISTS cases (
    case_id        TEXT PRIMARY KEY,
    received_at    TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    decision       TEXT NOT NULL,
    status         TEXT NOT NULL,
    accepted_seq   INTEGER NOT NULL,
    bookkept       INTEGER NOT NULL DEFAULT 0,
    reviewer       TEXT,
    review_reason  TEXT,
    reviewed_at    TEXT,
    review_bookkept INTEGER NOT NULL DEFAULT 0,
    submitter      TEXT,
    payload_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS cases_fingerprint ON cases (fingerprint);
CREATE TABLE IF NOT EXISTS case_links (
    case_id    TEXT NOT NULL,
    linked_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    score      REAL NOT NULL,
    PRIMARY KEY (case_id, linked_id, kind)
);
CREATE INDEX IF NOT EXISTS cases_pending ON cases (bookkept, accepted_seq);
"""
_RESUBMISSION_SQL = (
    "SELECT decision, submitter, payload_sha256, payload FROM cases WHERE case_id = ?"
)

# Columns added after the first release; a store created before gets them on open. Rows from
# then have no submitter (NULL): only a reviewer reads them, and an identical report replays.
_ADDED_COLUMNS = {"submitter": "TEXT", "payload_sha256": "TEXT"}


def payload_sha256(case: IcsrCase) -> str:
    """sha256 of the validated case as sorted JSON: what "the same report" means."""
    return _canonical_sha256(case.model_dump(mode="json"))


def _canonical_sha256(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resubmission(
    row: tuple[str, str | None, str | None, str], case_id: str, submitter: str, digest: str
) -> TriageDecision:
    """The stored decision if ``row`` holds this submitter's identical report; else CaseConflict."""
    decision, stored_submitter, stored_digest, payload = row
    if stored_digest is None:  # a row from before digests were stored
        stored_digest = _canonical_sha256(json.loads(payload))
    if stored_submitter not in (None, submitter) or stored_digest != digest:
        raise CaseConflict(
            f"case id {case_id} is already taken by a different report; nothing was stored "
            "and the first report is unchanged: send this report under a new case id (for a "
            "follow-up of your own case, a new id such as the old one with a version suffix)",
            record=case_id,
            field="case_id",
        )
    return TriageDecision.model_validate_json(decision)


def checked_review(case_id: str, verdict: str, reviewer: str, reason: str) -> None:
    """Refuse a review without a verdict, a reviewer and a reason of record.

    Raises:
        DataContractError: bad verdict, no reviewer or a reason under 3 non-space characters.
    """
    if verdict not in ("accepted", "rejected"):
        raise DataContractError(f"verdict {verdict!r} is not accepted|rejected", field="verdict")
    if len("".join(reason.split())) < 3 or not reviewer.strip():
        raise DataContractError(
            f"case {case_id}: a review needs a reviewer and a reason of record (at least "
            "3 characters that are not spaces)",
            field="reason",
        )


def reviewed(case_id: str, stored_decision: str | None, verdict: str) -> TriageDecision:
    """The decision of record after ``verdict`` on the stored (JSON) decision.

    Raises:
        DataContractError: the case is unknown or not held for review.
    """
    if stored_decision is None:
        raise DataContractError(f"case {case_id} is unknown", record=case_id, field="case_id")
    current = TriageDecision.model_validate_json(stored_decision)
    if current.status != "held_for_review":
        raise DataContractError(
            f"case {case_id} is {current.status}, not held for review",
            record=case_id,
            field="status",
        )
    return current.model_copy(update={"status": verdict})


def held_first(decisions: list[TriageDecision]) -> list[TriageDecision]:
    """Held decisions, earliest due date first (then case id): the order reviewers work in."""
    return sorted(decisions, key=lambda d: (d.due_date, d.case_id))


def seal_case(sealer: Sealer, case: IcsrCase) -> str:
    """The case as stored: sealed with the sealer's newest key, as ASCII text."""
    return sealer.seal(case.model_dump_json().encode("utf-8")).decode("ascii")


def open_case(sealer: Sealer, payload: str, case_id: str) -> IcsrCase:
    """A sealed payload, or one stored in the clear before encryption at rest."""
    if sealer.sealed_with(payload.encode("utf-8")) is None:
        return IcsrCase.model_validate_json(payload)
    return IcsrCase.model_validate_json(sealer.open(payload.encode("utf-8"), record=case_id))


def needs_reseal(sealer: Sealer, payload: str) -> bool:
    """Whether ``payload`` is in the clear or sealed with a key older than the newest."""
    return sealer.sealed_with(payload.encode("utf-8")) != sealer.primary_id


@dataclass(frozen=True)
class StoredCase:
    case: IcsrCase
    decision: TriageDecision
    reviewer: str | None
    review_reason: str | None
    reviewed_at: datetime | None
    submitter: str | None = None


@dataclass(frozen=True)
class ResealResult:
    resealed: int
    already_current: int


class TriageCases(Protocol):
    """What the triage lane needs from its store: a SQLite file or PostgreSQL."""

    sealer: Sealer

    def decision(self, case_id: str, *, submitter: str | None = None) -> TriageDecision | None: ...

    def known(self, case: IcsrCase, submitter: str) -> TriageDecision | None: ...

    def recent(self, fingerprint: str) -> list[tuple[str, str, datetime]]: ...

    def recent_of(self, submitter: str, limit: int) -> list[IcsrCase]: ...

    def link(self, case_id: str, linked_id: str, *, kind: str, score: float) -> None: ...

    def links(self, case_id: str) -> list[tuple[str, str, float]]: ...

    def accept(
        self, case: IcsrCase, fingerprint: str, decision: TriageDecision, *, submitter: str
    ) -> tuple[TriageDecision, bool]: ...

    def pending(self, limit: int) -> list[TriageDecision]: ...

    def deferred(self, limit: int) -> list[StoredCase]: ...

    def settle(self, decision: TriageDecision) -> bool: ...

    def mark_bookkept(self, case_ids: list[str]) -> None: ...

    def count(self, *, status: str | None = None, pending: bool = False) -> int: ...

    def held(self) -> list[TriageDecision]: ...

    def get(self, case_id: str) -> StoredCase | None: ...

    def review(
        self, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
    ) -> TriageDecision: ...

    def reviews_pending(self) -> list[dict[str, str]]: ...

    def mark_reviews_bookkept(self, case_ids: list[str]) -> None: ...

    def reseal(self, batch: int = 500) -> ResealResult: ...

    def dump(self) -> str: ...


class TriageStore:
    """Accepted cases and their decisions; safe to share across threads and processes.

    Args:
        path: the SQLite file (created 0600 in a 0700 folder).
        sealer: seals and opens the case payloads (``sealer_for(settings)``).

    Raises:
        ConfigError: the store holds cases sealed with a key the sealer does not have.
    """

    def __init__(self, path: Path, sealer: Sealer):
        self.path, self.sealer = path, sealer
        private_sqlite(path)
        with self._connect() as con:
            enable_wal(con)
            con.executescript(_DDL)
            self._add_missing_columns(con)
        self._check_key()

    @staticmethod
    def _add_missing_columns(con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")  # two processes opening an old store migrate it once
        have = {row[1] for row in con.execute("PRAGMA table_info(cases)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                con.execute(f"ALTER TABLE cases ADD COLUMN {name} {kind}")
        con.execute("CREATE INDEX IF NOT EXISTS cases_submitter ON cases (submitter, accepted_seq)")
        con.execute("COMMIT")

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return durable_connection(self.path)

    def decision(self, case_id: str, *, submitter: str | None = None) -> TriageDecision | None:
        """The decision of record; with ``submitter``, only if that submitter sent the case."""
        sql, params = "SELECT decision FROM cases WHERE case_id = ?", [case_id]
        if submitter is not None:
            sql, params = sql + " AND submitter = ?", [case_id, submitter]
        with self._connect() as con:
            row = con.execute(sql, params).fetchone()
        return TriageDecision.model_validate_json(row[0]) if row else None

    def known(self, case: IcsrCase, submitter: str) -> TriageDecision | None:
        """The first decision if ``submitter`` already sent this very report; None if the id is new.

        A read-only early answer that spares a resubmission the model; ``accept`` checks again
        inside its transaction.

        Raises:
            CaseConflict: the id names a different report or another submitter's report.
        """
        with self._connect() as con:
            row = con.execute(_RESUBMISSION_SQL, (case.case_id,)).fetchone()
        if row is None:
            return None
        return resubmission(self._legible(row), case.case_id, submitter, payload_sha256(case))

    def recent(self, fingerprint: str) -> list[tuple[str, str, datetime]]:
        """Accepted cases with this duplicate fingerprint: (case_id, fingerprint, received_at)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT case_id, fingerprint, received_at FROM cases WHERE fingerprint = ?",
                (fingerprint,),
            ).fetchall()
        return [(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]

    def recent_of(self, submitter: str, limit: int) -> list[IcsrCase]:
        """The submitter's latest ``limit`` cases, newest first (follow-up candidates).

        Scoped to one submitter: a follow-up link never names another submitter's case.
        """
        with self._connect() as con:
            rows = con.execute(
                "SELECT case_id, payload FROM cases WHERE submitter = ?"
                " ORDER BY accepted_seq DESC LIMIT ?",
                (submitter, limit),
            ).fetchall()
        return [self._open_any(payload, case_id) for case_id, payload in rows]

    def link(self, case_id: str, linked_id: str, *, kind: str, score: float) -> None:
        """Record a link both ways (``possible_follow_up``): each case names the other."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR REPLACE INTO case_links (case_id, linked_id, kind, score)"
                " VALUES (?, ?, ?, ?)",
                [(case_id, linked_id, kind, score), (linked_id, case_id, kind, score)],
            )
            con.execute("COMMIT")

    def links(self, case_id: str) -> list[tuple[str, str, float]]:
        """(linked case id, kind, score) of every link of ``case_id``."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT linked_id, kind, score FROM case_links WHERE case_id = ?"
                " ORDER BY linked_id",
                (case_id,),
            ).fetchall()
        return [(r[0], r[1], float(r[2])) for r in rows]

    def accept(
        self, case: IcsrCase, fingerprint: str, decision: TriageDecision, *, submitter: str
    ) -> tuple[TriageDecision, bool]:
        """Store the case, its submitter and its decision unless the case id is known.

        Returns:
            The decision of record and whether this call created it (False: the same
            submitter resent the same report, answered with the first decision).

        Raises:
            CaseConflict: the id names a different report or another submitter's report;
                nothing is stored or changed.
        """
        digest = payload_sha256(case)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute(_RESUBMISSION_SQL, (case.case_id,)).fetchone()
                if row:
                    known = resubmission(self._legible(row), case.case_id, submitter, digest)
                    con.execute("COMMIT")
                    return known, False
                self._insert(con, case, fingerprint, decision, submitter, digest)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return decision, True

    def _insert(
        self,
        con: sqlite3.Connection,
        case: IcsrCase,
        fingerprint: str,
        decision: TriageDecision,
        submitter: str,
        digest: str,
    ) -> None:
        seq = con.execute("SELECT coalesce(max(accepted_seq), 0) + 1 FROM cases").fetchone()
        con.execute(
            "INSERT INTO cases (case_id, received_at, fingerprint, payload, decision, status,"
            " accepted_seq, submitter, payload_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case.case_id,
                case.received_at.isoformat(),
                fingerprint,
                self._seal(case),
                decision.model_dump_json(),
                decision.status,
                seq[0],
                submitter,
                digest,
            ),
        )

    def pending(self, limit: int) -> list[TriageDecision]:
        """Decisions the lane has not yet booked, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT decision FROM cases WHERE bookkept = 0 ORDER BY accepted_seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [TriageDecision.model_validate_json(r[0]) for r in rows]

    def deferred(self, limit: int) -> list[StoredCase]:
        """Cases the service deferred to the batch lane, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT case_id FROM cases WHERE status = 'deferred' ORDER BY accepted_seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [case for (case_id,) in rows if (case := self.get(case_id)) is not None]

    def settle(self, decision: TriageDecision) -> bool:
        """Replace a deferred decision with the batch lane's; False if it is no longer deferred.

        The case is queued for booking again, so the lane writes the new decision too.
        """
        with self._connect() as con:
            cursor = con.execute(
                "UPDATE cases SET decision = ?, status = ?, bookkept = 0"
                " WHERE case_id = ? AND status = 'deferred'",
                (decision.model_dump_json(), decision.status, decision.case_id),
            )
            return cursor.rowcount == 1

    def mark_bookkept(self, case_ids: list[str]) -> None:
        with self._connect() as con:
            con.executemany(
                "UPDATE cases SET bookkept = 1 WHERE case_id = ?", [(c,) for c in case_ids]
            )

    def count(self, *, status: str | None = None, pending: bool = False) -> int:
        sql, params = "SELECT count(*) FROM cases WHERE 1 = 1", []
        if status:
            sql, params = sql + " AND status = ?", [status]
        if pending:
            sql += " AND bookkept = 0"
        with self._connect() as con:
            return int(con.execute(sql, params).fetchone()[0])

    def held(self) -> list[TriageDecision]:
        """Cases waiting for a human, oldest due date first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT decision FROM cases WHERE status = 'held_for_review' ORDER BY accepted_seq"
            ).fetchall()
        return held_first([TriageDecision.model_validate_json(r[0]) for r in rows])

    def get(self, case_id: str) -> StoredCase | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT payload, decision, reviewer, review_reason, reviewed_at, submitter"
                " FROM cases WHERE case_id = ?",
                (case_id,),
            ).fetchone()
        if row is None:
            return None
        return StoredCase(
            case=self._unseal(row[0], case_id),
            decision=TriageDecision.model_validate_json(row[1]),
            reviewer=row[2],
            review_reason=row[3],
            reviewed_at=datetime.fromisoformat(row[4]) if row[4] else None,
            submitter=row[5],
        )

    def review(
        self, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
    ) -> TriageDecision:
        """Record a human's verdict on a held case; the status becomes accepted or rejected.

        Raises:
            DataContractError: unknown case, not held, bad verdict or empty reason.
        """
        checked_review(case_id, verdict, reviewer, reason)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT decision FROM cases WHERE case_id = ?", (case_id,)).fetchone()
            try:
                updated = reviewed(case_id, row[0] if row else None, verdict)
            except DataContractError:
                con.execute("ROLLBACK")
                raise
            con.execute(
                "UPDATE cases SET decision = ?, status = ?, reviewer = ?, review_reason = ?,"
                " reviewed_at = ?, review_bookkept = 0 WHERE case_id = ?",
                (updated.model_dump_json(), verdict, reviewer, reason, at.isoformat(), case_id),
            )
            con.execute("COMMIT")
        return updated

    def reviews_pending(self) -> list[dict[str, str]]:
        """Human verdicts not yet written to the audit trail."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT case_id, status, reviewer, review_reason, reviewed_at FROM cases"
                " WHERE reviewed_at IS NOT NULL AND review_bookkept = 0"
            ).fetchall()
        keys = ("case_id", "status", "reviewer", "review_reason", "reviewed_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def mark_reviews_bookkept(self, case_ids: list[str]) -> None:
        with self._connect() as con:
            con.executemany(
                "UPDATE cases SET review_bookkept = 1 WHERE case_id = ?", [(c,) for c in case_ids]
            )

    def _seal(self, case: IcsrCase) -> str:
        return seal_case(self.sealer, case)

    def _unseal(self, payload: str, case_id: str) -> IcsrCase:
        plain = self.sealer.open(payload.encode("utf-8"), record=case_id)
        return IcsrCase.model_validate_json(plain)

    def _check_key(self) -> None:
        """Fail at start, not at the first read, when the newest case's key is missing."""
        with self._connect() as con:
            row = con.execute(
                "SELECT case_id, payload FROM cases ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
        if row is not None and self.sealer.sealed_with(row[1].encode("utf-8")) is not None:
            self._unseal(row[1], row[0])

    def reseal(self, batch: int = 500) -> ResealResult:
        """Seal every payload with the sealer's newest key (rotation; also seals clear rows).

        Rows move in short transactions (intake keeps running); afterwards the file is
        vacuumed and the WAL truncated, so no copy under an old key (or in the clear) is left.

        Raises:
            ConfigError: a row is sealed with a key the sealer does not have.
        """
        resealed = current = 0
        last = 0
        while True:
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                rows = con.execute(
                    "SELECT rowid, case_id, payload FROM cases WHERE rowid > ?"
                    " ORDER BY rowid LIMIT ?",
                    (last, batch),
                ).fetchall()
                for rowid, case_id, payload in rows:
                    if not needs_reseal(self.sealer, payload):
                        current += 1
                        continue
                    con.execute(
                        "UPDATE cases SET payload = ? WHERE rowid = ?",
                        (self._seal(self._open_any(payload, case_id)), rowid),
                    )
                    resealed += 1
                con.execute("COMMIT")
            if len(rows) < batch:
                break
            last = rows[-1][0]
        with self._connect() as con:
            con.execute("VACUUM")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return ResealResult(resealed=resealed, already_current=current)

    def _legible(
        self, row: tuple[str, str | None, str | None, str]
    ) -> tuple[str, str | None, str | None, str]:
        """``row`` with a clear payload where no digest was stored (rows from before digests)."""
        decision, submitter, digest, payload = row
        if digest is not None:
            return row
        case_id = TriageDecision.model_validate_json(decision).case_id
        return decision, submitter, digest, self._open_any(payload, case_id).model_dump_json()

    def _open_any(self, payload: str, case_id: str) -> IcsrCase:
        """A sealed payload, or one stored in the clear before encryption at rest."""
        return open_case(self.sealer, payload, case_id)

    def dump(self) -> str:
        """All decisions as JSON lines (for the CLI and debugging)."""
        with self._connect() as con:
            rows = con.execute("SELECT decision FROM cases ORDER BY accepted_seq").fetchall()
        return "\n".join(json.dumps(json.loads(r[0])) for r in rows)
