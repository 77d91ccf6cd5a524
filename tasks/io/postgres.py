"""PostgreSQL for the shared state of several hosts: connections and versioned migrations.

Selected by ``PHARMALANE_DATABASE_URL`` (``postgresql://user:pass@host:5432/db``); unset, every
store stays an embedded SQLite file under ``PHARMALANE_HOME``. The schema is the numbered SQL
files of ``tasks/io/migrations/`` (``0001_shared_state.sql``, ...), each applied once, in
order, in one transaction that holds a transaction-level advisory lock: two processes starting
at once on a new database apply each file exactly once, and a failed file leaves nothing half
done. ``schema_migrations`` records which files were applied and when.

A connection is kept per process and thread (a forked child opens its own: a libpq connection
must never be shared across a fork), in autocommit mode; a store opens ``transaction()``
blocks where it reads and writes together.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

from tasks.errors import BackendUnavailable, ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK = 0x7068_6C61_6E65  # "phlane": the advisory lock key of schema changes
_SCHEMA_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
_MIGRATED: set[str] = set()  # URLs this process has brought up to date
_POOLS: dict[str, Pool] = {}
_LOCK = threading.Lock()


def is_postgres(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database (else the embedded SQLite files are used)."""
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def migrations(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    """The numbered migration files, in order.

    Raises:
        ConfigError: a file is misnamed or two files share a number.
    """
    found: dict[int, Path] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None or int(match.group(1)) in found:
            raise ConfigError(f"{path}: migrations are NNNN_lower_name.sql with unique numbers")
        found[int(match.group(1))] = path
    return sorted(found.items())


def connect(url: str) -> psycopg.Connection[TupleRow]:
    """An autocommit connection to ``url``.

    Raises:
        BackendUnavailable: the server cannot be reached or refuses the login.
    """
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=30)
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(
            f"PostgreSQL at PHARMALANE_DATABASE_URL is unreachable ({exc.sqlstate or 'no code'});"
            " check the host, port, user and password, or unset it to use the embedded SQLite"
        ) from exc


def migrate(url: str, folder: Path = MIGRATIONS) -> list[int]:
    """Apply the migrations ``url`` lacks; returns the versions applied now (usually none)."""
    applied: list[int] = []
    with connect(url) as con, con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        con.execute(_SCHEMA_MIGRATIONS)
        done = {int(row[0]) for row in con.execute("SELECT version FROM schema_migrations")}
        for version, path in migrations(folder):
            if version in done:
                continue
            con.execute(path.read_text(encoding="utf-8").encode())
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (version, path.name),
            )
            applied.append(version)
    return applied


def shared_pool(url: str) -> Pool:
    """This process's pool for ``url``: every store on one database shares its connections."""
    with _LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            pool = _POOLS[url] = Pool(url, migrated=url in _MIGRATED)
            _MIGRATED.add(url)
        return pool


@atexit.register
def _close_pools() -> None:
    """Sessions end with a Terminate message at exit, not a dropped socket and a warning."""
    for pool in list(_POOLS.values()):
        pool.close()


class Pool:
    """One migrated autocommit connection per process and thread, to one database.

    Stores take theirs from ``shared_pool``; closing it closes them for all (the next use
    reconnects).
    """

    def __init__(self, url: str, *, migrated: bool = False):
        self.url = url
        self._connections: dict[tuple[int, int], psycopg.Connection[TupleRow]] = {}
        if not migrated:
            migrate(url)

    def connection(self) -> psycopg.Connection[TupleRow]:
        # current_thread() registers a thread started outside `threading`, so that
        # `_close_ended_threads` sees it as alive
        key = (os.getpid(), threading.current_thread().ident or threading.get_ident())
        con = self._connections.get(key)
        if con is None or con.closed:
            self._close_ended_threads()
            con = self._connections[key] = connect(self.url)
        return con

    def _close_ended_threads(self) -> None:
        """Close the connections of this process's threads that have ended.

        A worker's task threads come and go; without this each would leave a server session
        open until the process exits, and a long-lived worker would use up the server's
        ``max_connections``.
        """
        alive = {thread.ident for thread in threading.enumerate()}
        for (pid, ident), con in list(self._connections.items()):
            if pid == os.getpid() and ident not in alive:
                con.close()
                self._connections.pop((pid, ident), None)

    def close(self) -> None:
        """Close this process's connections (a forked parent's are left to the parent)."""
        for (pid, thread), con in list(self._connections.items()):
            if pid == os.getpid():
                con.close()
                del self._connections[(pid, thread)]


class AdvisoryLock:
    """An exclusive lock named ``name`` across every host on the database at ``url``.

    A session-level ``pg_advisory_lock`` on this thread's kept connection, released on exit;
    a process that dies mid-hold loses its session, and the lock with it (as a ``flock`` is
    released with its process). Not re-entrant: a holder must not take it again.
    """

    def __init__(self, url: str, name: str):
        self.name = name
        self._pool = shared_pool(url)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        con = self._pool.connection()
        con.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (self.name,))
        try:
            yield
        finally:
            con.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.name,))
