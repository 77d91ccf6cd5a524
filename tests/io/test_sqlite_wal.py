"""A store opened while another connection holds its file waits for it instead of failing.

Switching to WAL needs an exclusive lock and SQLite does not wait for it by itself: nine
threads triaging their first cases at once made one budget-store open fail with "database is
locked" (a serious case then got a 500).
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

from tasks.io.budget import BudgetStore
from tasks.io.sqlite_wal import enable_wal


def test_a_first_open_waits_for_a_writer_on_a_new_file(tmp_path):
    path = tmp_path / "budget.sqlite"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of its first write
    writer.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    release.start()
    store = BudgetStore(path)  # must wait for the writer, not raise
    release.join()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert (store.path, mode) == (path, "wal")


def test_many_threads_opening_one_new_store_at_once_all_succeed(tmp_path):
    path = tmp_path / "budget.sqlite"
    start = threading.Barrier(8)

    def open_store(_: int) -> str:
        start.wait()
        return str(BudgetStore(path).path)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(open_store, range(8))) == [str(path)] * 8


def test_a_file_already_in_wal_is_left_as_it_is(tmp_path):
    con = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    enable_wal(con)
    enable_wal(con)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
