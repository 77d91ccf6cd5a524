"""The triage store on PostgreSQL: one queue of accepted cases for every API replica and host.

The invariants of ``tasks/io/triage_store.py`` hold the same way:

* a case id is stored once: ``accept`` inserts with ``ON CONFLICT (case_id) DO NOTHING``, so of
  two replicas posting the same case at once exactly one inserts; the other reads the row that
  won and answers as a resubmission (the first decision) or a ``CaseConflict``, through the
  same ``resubmission`` rule as the SQLite store. ``accepted_seq`` is an identity column, so no
  ``max() + 1`` under a lock is needed (it may have gaps; only its order matters);
* a held case is reviewed once: ``review`` locks the case's row (``SELECT ... FOR UPDATE``);
* the case never reaches the database in the clear: it is sealed with the data key in this
  process before the INSERT; ``reseal`` moves every row to the newest key in short batches
  (row locks, intake keeps running), then ``VACUUM FULL`` rewrites the table so no dead row
  version under an old key is left in its files. Copies the server already wrote to its WAL
  or to backups age out with them (ciphertext under the old key: keep that key until then).
"""

from __future__ import annotations

import json
from datetime import datetime

from tasks.intake import IcsrCase, TriageDecision
from tasks.io.postgres import shared_pool
from tasks.io.sealing import Sealer
from tasks.io.triage_store import (
    ResealResult,
    StoredCase,
    checked_review,
    held_first,
    needs_reseal,
    open_case,
    payload_sha256,
    resubmission,
    reviewed,
    seal_case,
)

_INSERT = (
    "INSERT INTO triage_cases (case_id, received_at, fingerprint, payload, decision, status,"
    " submitter, payload_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (case_id) DO NOTHING"
)
_RESUBMISSION_SQL = (
    "SELECT decision, submitter, payload_sha256, payload FROM triage_cases WHERE case_id = %s"
)


class PostgresTriageStore:
    """Accepted cases in the database at ``url``; ``sealer`` seals and opens their payloads.

    Raises:
        ConfigError: the store holds cases sealed with a key the sealer does not have.
    """

    def __init__(self, url: str, sealer: Sealer):
        self.sealer = sealer
        self._pool = shared_pool(url)
        self._check_key()

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return list(self._pool.connection().execute(sql.encode(), params).fetchall())

    def decision(self, case_id: str, *, submitter: str | None = None) -> TriageDecision | None:
        """The decision of record; with ``submitter``, only if that submitter sent the case."""
        sql = "SELECT decision FROM triage_cases WHERE case_id = %s"
        params: tuple[object, ...] = (case_id,)
        if submitter is not None:
            sql, params = sql + " AND submitter = %s", (case_id, submitter)
        rows = self._rows(sql, params)
        return TriageDecision.model_validate_json(str(rows[0][0])) if rows else None

    def known(self, case: IcsrCase, submitter: str) -> TriageDecision | None:
        """The first decision if ``submitter`` already sent this very report; None if the id is new.

        Raises:
            CaseConflict: the id names a different report or another submitter's report.
        """
        row = self._pool.connection().execute(_RESUBMISSION_SQL, (case.case_id,)).fetchone()
        if row is None:
            return None
        return resubmission(row, case.case_id, submitter, payload_sha256(case))

    def recent(self, fingerprint: str) -> list[tuple[str, str, datetime]]:
        """Accepted cases with this duplicate fingerprint: (case_id, fingerprint, received_at)."""
        rows = self._rows(
            "SELECT case_id, fingerprint, received_at FROM triage_cases WHERE fingerprint = %s",
            (fingerprint,),
        )
        return [(str(r[0]), str(r[1]), datetime.fromisoformat(str(r[2]))) for r in rows]

    def recent_of(self, submitter: str, limit: int) -> list[IcsrCase]:
        """The submitter's latest ``limit`` cases, newest first (follow-up candidates)."""
        rows = self._rows(
            "SELECT case_id, payload FROM triage_cases WHERE submitter = %s"
            " ORDER BY accepted_seq DESC LIMIT %s",
            (submitter, limit),
        )
        return [open_case(self.sealer, str(payload), str(case_id)) for case_id, payload in rows]

    def link(self, case_id: str, linked_id: str, *, kind: str, score: float) -> None:
        """Record a link both ways (``possible_follow_up``): each case names the other."""
        con = self._pool.connection()
        with con.transaction():
            for a, b in ((case_id, linked_id), (linked_id, case_id)):
                con.execute(
                    "INSERT INTO triage_case_links (case_id, linked_id, kind, score)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (case_id, linked_id, kind)"
                    " DO UPDATE SET score = excluded.score",
                    (a, b, kind, score),
                )

    def links(self, case_id: str) -> list[tuple[str, str, float]]:
        """(linked case id, kind, score) of every link of ``case_id``."""
        rows = self._rows(
            "SELECT linked_id, kind, score FROM triage_case_links WHERE case_id = %s"
            " ORDER BY linked_id",
            (case_id,),
        )
        return [(str(r[0]), str(r[1]), float(str(r[2]))) for r in rows]

    def accept(
        self, case: IcsrCase, fingerprint: str, decision: TriageDecision, *, submitter: str
    ) -> tuple[TriageDecision, bool]:
        """Store the case, its submitter and its decision unless the case id is known.

        Returns:
            The decision of record and whether this call created it.

        Raises:
            CaseConflict: the id names a different report or another submitter's report;
                nothing is stored or changed.
        """
        digest = payload_sha256(case)
        row = (
            case.case_id,
            case.received_at.isoformat(),
            fingerprint,
            seal_case(self.sealer, case),
        )
        con = self._pool.connection()
        inserted = con.execute(
            _INSERT, (*row, decision.model_dump_json(), decision.status, submitter, digest)
        ).rowcount
        if inserted:
            return decision, True
        stored = con.execute(_RESUBMISSION_SQL, (case.case_id,)).fetchone()
        assert stored is not None  # rows are never deleted
        return resubmission(stored, case.case_id, submitter, digest), False

    def pending(self, limit: int) -> list[TriageDecision]:
        """Decisions the lane has not yet booked, oldest first."""
        rows = self._rows(
            "SELECT decision FROM triage_cases WHERE NOT bookkept ORDER BY accepted_seq LIMIT %s",
            (limit,),
        )
        return [TriageDecision.model_validate_json(str(r[0])) for r in rows]

    def deferred(self, limit: int) -> list[StoredCase]:
        """Cases the service deferred to the batch lane, oldest first."""
        rows = self._rows(
            "SELECT case_id FROM triage_cases WHERE status = 'deferred'"
            " ORDER BY accepted_seq LIMIT %s",
            (limit,),
        )
        return [case for (case_id,) in rows if (case := self.get(str(case_id))) is not None]

    def settle(self, decision: TriageDecision) -> bool:
        """Replace a deferred decision with the batch lane's; False if it is no longer deferred."""
        cursor = self._pool.connection().execute(
            "UPDATE triage_cases SET decision = %s, status = %s, bookkept = false"
            " WHERE case_id = %s AND status = 'deferred'",
            (decision.model_dump_json(), decision.status, decision.case_id),
        )
        return cursor.rowcount == 1

    def mark_bookkept(self, case_ids: list[str]) -> None:
        self._pool.connection().execute(
            "UPDATE triage_cases SET bookkept = true WHERE case_id = ANY(%s)", (case_ids,)
        )

    def count(self, *, status: str | None = None, pending: bool = False) -> int:
        sql = "SELECT count(*) FROM triage_cases WHERE true"
        params: tuple[object, ...] = ()
        if status:
            sql, params = sql + " AND status = %s", (status,)
        if pending:
            sql += " AND NOT bookkept"
        return int(str(self._rows(sql, params)[0][0]))

    def held(self) -> list[TriageDecision]:
        """Cases waiting for a human, earliest due date first."""
        rows = self._rows(
            "SELECT decision FROM triage_cases WHERE status = 'held_for_review'"
            " ORDER BY accepted_seq"
        )
        return held_first([TriageDecision.model_validate_json(str(r[0])) for r in rows])

    def get(self, case_id: str) -> StoredCase | None:
        rows = self._rows(
            "SELECT payload, decision, reviewer, review_reason, reviewed_at, submitter"
            " FROM triage_cases WHERE case_id = %s",
            (case_id,),
        )
        if not rows:
            return None
        payload, decision, reviewer, reason, at, submitter = rows[0]
        return StoredCase(
            # sealed or refused, as in the SQLite store: never served as if it were protected
            case=IcsrCase.model_validate_json(
                self.sealer.open(str(payload).encode(), record=case_id)
            ),
            decision=TriageDecision.model_validate_json(str(decision)),
            reviewer=None if reviewer is None else str(reviewer),
            review_reason=None if reason is None else str(reason),
            reviewed_at=datetime.fromisoformat(str(at)) if at else None,
            submitter=None if submitter is None else str(submitter),
        )

    def review(
        self, case_id: str, *, verdict: str, reviewer: str, reason: str, at: datetime
    ) -> TriageDecision:
        """Record a human's verdict on a held case; of two reviewers exactly one records it.

        Raises:
            DataContractError: unknown case, not held, bad verdict or empty reason.
        """
        checked_review(case_id, verdict, reviewer, reason)
        con = self._pool.connection()
        with con.transaction():
            row = con.execute(
                "SELECT decision FROM triage_cases WHERE case_id = %s FOR UPDATE", (case_id,)
            ).fetchone()
            updated = reviewed(case_id, None if row is None else str(row[0]), verdict)
            con.execute(
                "UPDATE triage_cases SET decision = %s, status = %s, reviewer = %s,"
                " review_reason = %s, reviewed_at = %s, review_bookkept = false"
                " WHERE case_id = %s",
                (updated.model_dump_json(), verdict, reviewer, reason, at.isoformat(), case_id),
            )
        return updated

    def reviews_pending(self) -> list[dict[str, str]]:
        """Human verdicts not yet written to the audit trail."""
        rows = self._rows(
            "SELECT case_id, status, reviewer, review_reason, reviewed_at FROM triage_cases"
            " WHERE reviewed_at IS NOT NULL AND NOT review_bookkept ORDER BY accepted_seq"
        )
        keys = ("case_id", "status", "reviewer", "review_reason", "reviewed_at")
        return [dict(zip(keys, (str(v) for v in r), strict=True)) for r in rows]

    def mark_reviews_bookkept(self, case_ids: list[str]) -> None:
        self._pool.connection().execute(
            "UPDATE triage_cases SET review_bookkept = true WHERE case_id = ANY(%s)", (case_ids,)
        )

    def _check_key(self) -> None:
        """Fail at start, not at the first read, when the newest case's key is missing."""
        rows = self._rows(
            "SELECT case_id, payload FROM triage_cases ORDER BY accepted_seq DESC LIMIT 1"
        )
        if rows:
            open_case(self.sealer, str(rows[0][1]), str(rows[0][0]))

    def reseal(self, batch: int = 500) -> ResealResult:
        """Seal every payload with the sealer's newest key (rotation), then rewrite the table.

        Raises:
            ConfigError: a row is sealed with a key the sealer does not have.
        """
        resealed = current = 0
        last, con = 0, self._pool.connection()
        while True:
            with con.transaction():
                rows = con.execute(
                    "SELECT accepted_seq, case_id, payload FROM triage_cases"
                    " WHERE accepted_seq > %s ORDER BY accepted_seq LIMIT %s FOR UPDATE",
                    (last, batch),
                ).fetchall()
                for seq, case_id, payload in rows:
                    if not needs_reseal(self.sealer, payload):
                        current += 1
                        continue
                    fresh = seal_case(self.sealer, open_case(self.sealer, payload, case_id))
                    con.execute(
                        "UPDATE triage_cases SET payload = %s WHERE accepted_seq = %s",
                        (fresh, seq),
                    )
                    resealed += 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
        con.execute("VACUUM FULL triage_cases")  # no dead row version under an old key left
        return ResealResult(resealed=resealed, already_current=current)

    def dump(self) -> str:
        """All decisions as JSON lines (for the CLI and debugging)."""
        rows = self._rows("SELECT decision FROM triage_cases ORDER BY accepted_seq")
        return "\n".join(json.dumps(json.loads(str(r[0]))) for r in rows)

    def close(self) -> None:
        self._pool.close()
