"""Which store holds the shared state: one setting, two implementations.

``PHARMALANE_DATABASE_URL`` unset: SQLite files under ``PHARMALANE_HOME`` (the embedded
default: one host, any number of processes). Set to ``postgresql://...``: PostgreSQL, shared by
every host and replica (``tasks/io/postgres.py``). Each store keeps connections per process
and thread, so callers build one per process and keep it (``Runtime`` does).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tasks.errors import ConfigError
from tasks.io.audit import AuditTrail
from tasks.io.budget import Budgets, BudgetStore
from tasks.io.call_journal import CallJournal, PaidCallJournal
from tasks.io.inbox import InboxStore, SqliteInbox
from tasks.io.literature_state import LiteratureMarks, LiteratureState
from tasks.io.postgres import AdvisoryLock, is_postgres
from tasks.io.rate_limit import RateBuckets, RequestBuckets
from tasks.io.review_codes import ReviewCodeStore, SqliteReviewCodes
from tasks.io.sealing import Sealer
from tasks.io.triage_store import TriageCases, TriageStore


def _checked(url: str | None) -> str | None:
    if url is not None and not is_postgres(url):
        raise ConfigError(
            "PHARMALANE_DATABASE_URL must be a postgresql://user:password@host:port/db URL; "
            "unset it to keep the shared state in SQLite under PHARMALANE_HOME"
        )
    return url


def open_budgets(url: str | None, path: Path, *, reservation_ttl: timedelta) -> Budgets:
    """The budget store at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return BudgetStore(path, reservation_ttl=reservation_ttl)
    from tasks.io.budget_pg import PostgresBudgetStore

    return PostgresBudgetStore(url, reservation_ttl=reservation_ttl)


def open_journal(url: str | None, path: Path) -> PaidCallJournal:
    """The paid-call journal at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return CallJournal(path)
    from tasks.io.call_journal_pg import PostgresCallJournal

    return PostgresCallJournal(url)


def open_request_buckets(url: str | None, path: Path) -> RateBuckets:
    """The request buckets at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return RequestBuckets(path)
    from tasks.io.rate_limit_pg import PostgresRequestBuckets

    return PostgresRequestBuckets(url)


AUDIT_LOCK = "pharmalane:audit-trail"  # one trail per deployment database


def open_audit_trail(url: str | None, folder: Path, key: bytes | None) -> AuditTrail:
    """The trail in ``folder``; its appends serialised by a PostgreSQL advisory lock at
    ``url`` (every host), or else by a ``flock`` in ``folder`` (one host)."""
    if (url := _checked(url)) is None:
        return AuditTrail(folder, key)
    return AuditTrail(folder, key, lock=AdvisoryLock(url, AUDIT_LOCK))


def open_inbox(url: str | None, path: Path, sealer: Sealer) -> InboxStore:
    """The review inbox at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return SqliteInbox(path, sealer)
    from tasks.io.inbox_pg import PostgresInbox

    return PostgresInbox(url, sealer)


def open_review_codes(url: str | None, path: Path) -> ReviewCodeStore:
    """The review codes at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return SqliteReviewCodes(path)
    from tasks.io.review_codes_pg import PostgresReviewCodes

    return PostgresReviewCodes(url)


def open_literature_state(url: str | None, path: Path) -> LiteratureMarks:
    """The literature watermarks at ``url`` (PostgreSQL) or else the SQLite file ``path``."""
    if (url := _checked(url)) is None:
        return LiteratureState(path)
    from tasks.io.literature_state_pg import PostgresLiteratureState

    return PostgresLiteratureState(url)


def open_triage_store(url: str | None, path: Path, sealer: Sealer) -> TriageCases:
    """The triage store (accepted cases, sealed) at ``url`` (PostgreSQL) or else the file ``path``.

    Raises:
        ConfigError: the store holds cases sealed with a key ``sealer`` does not have.
    """
    if (url := _checked(url)) is None:
        return TriageStore(path, sealer)
    from tasks.io.triage_store_pg import PostgresTriageStore

    return PostgresTriageStore(url, sealer)
