"""One setting chooses the store: unset, SQLite under home; a postgresql:// URL, PostgreSQL
(migrated once, whoever opens it first); anything else is refused with what to do."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from tasks.errors import BackendUnavailable, ConfigError
from tasks.io.budget import BudgetStore
from tasks.io.budget_pg import PostgresBudgetStore
from tasks.io.call_journal import CallJournal
from tasks.io.call_journal_pg import PostgresCallJournal
from tasks.io.postgres import migrate, migrations, shared_pool
from tasks.io.shared_state import open_budgets
from tasks.services.runtime import Runtime
from tasks.settings import load_settings


def test_unset_keeps_sqlite_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("PHARMALANE_DATABASE_URL", raising=False)
    runtime = Runtime.for_settings(load_settings(home=tmp_path / "home"))
    assert isinstance(runtime.budgets, BudgetStore)
    assert isinstance(runtime.journal, CallJournal)
    assert (tmp_path / "home" / "supervisor" / "budget.sqlite").is_file()


def test_the_environment_variable_selects_postgresql(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PHARMALANE_DATABASE_URL", postgres_url)
    settings = load_settings(home=tmp_path / "home")
    assert settings.shared_database == postgres_url
    assert postgres_url not in repr(settings)  # a secret: the password stays out of logs
    runtime = Runtime.for_settings(settings)
    assert isinstance(runtime.budgets, PostgresBudgetStore)
    assert isinstance(runtime.journal, PostgresCallJournal)
    assert not (tmp_path / "home" / "supervisor").exists()


def test_a_url_of_another_database_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="postgresql://"):
        open_budgets("mysql://u@h/db", tmp_path / "b.sqlite", reservation_ttl=timedelta(minutes=1))


def test_an_unreachable_server_says_what_to_check(tmp_path):
    with pytest.raises(BackendUnavailable, match="PHARMALANE_DATABASE_URL"):
        open_budgets(
            "postgresql://u@127.0.0.1:1/db",
            tmp_path / "b.sqlite",
            reservation_ttl=timedelta(minutes=1),
        )


def test_two_first_openers_apply_each_migration_once(postgres_url):
    with ThreadPoolExecutor(2) as pool:
        applied = sorted(pool.map(lambda _: migrate(postgres_url), range(2)))
    versions = [v for v, _ in migrations()]
    assert applied == [[], versions]
    with psycopg.connect(postgres_url) as con:
        rows = con.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert rows == [(v, p.name) for v, p in migrations()]
    assert migrate(postgres_url) == []


def _sessions(url: str, *, settled_at: int) -> int:
    """Other sessions on the database, once their count reaches ``settled_at`` or 10 s pass (a
    closed client's server process exits a moment after the close returns)."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(url) as con:
            row = con.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert row is not None
        if int(row[0]) == settled_at or time.monotonic() > deadline:
            return int(row[0])
        time.sleep(0.05)


def test_sessions_of_ended_threads_are_closed_not_kept(postgres_url):
    """A worker's threads come and go; the pool keeps one session per live thread, not per
    thread ever seen, so a long-lived worker does not use up max_connections."""
    pool = shared_pool(postgres_url)
    for _ in range(4):  # four short-lived executors, as four task runs' threads
        with ThreadPoolExecutor(3) as threads:
            list(threads.map(lambda _: pool.connection().execute("SELECT 1"), range(30)))
    pool.connection().execute("SELECT 1")  # this thread's first use closes the ended ones'
    assert _sessions(postgres_url, settled_at=1) == 1
    pool.close()
    assert _sessions(postgres_url, settled_at=0) == 0
