"""The paid-call journal: every answered large-model call, kept the moment it returns.

A model call is paid when it returns, but the lane writes its ledger, decisions and cases per
chunk. A run killed mid-chunk (spot pre-emption) would lose answers it already paid for and
ask (and pay) again on resume. The journal closes that gap: the answer is committed to SQLite
right after the call, keyed by what was asked (model, messages, schema, max_tokens), and a
resumed run replays it instead of calling. Replays cost nothing and reserve no budget.

Only the answer and its token usage are kept (the text is the model's JSON verdict); the prompt
itself is not stored, only its hash. ``prune`` drops entries older than the retention window.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from models.llm import ChatResult
from tasks.io.sqlite_wal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_key    TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at  TEXT NOT NULL
)
"""


def call_key(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    schema: Mapping[str, Any] | None,
    max_tokens: int,
) -> str:
    """The identity of a call: the same question to the same model gets the same key."""
    body = json.dumps(
        {"model": model, "messages": list(messages), "schema": schema, "max_tokens": max_tokens},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class PaidCallJournal(Protocol):
    """Answered calls by key: the embedded ``CallJournal`` (SQLite) or
    ``PostgresCallJournal`` (shared by every host); a key already kept is never overwritten."""

    def get(self, key: str) -> ChatResult | None: ...

    def put(self, key: str, result: ChatResult, now: datetime) -> None: ...

    def count(self) -> int: ...

    def prune(self, now: datetime, keep: timedelta) -> int: ...

    def close(self) -> None: ...


def encode_result(result: ChatResult) -> tuple[str, str]:
    """(model that served, JSON of the answer) as both journals store them."""
    return result.served_by or result.model, json.dumps(asdict(result))


def decode_result(text: str) -> ChatResult:
    return ChatResult(**json.loads(text))


class CallJournal:
    """Answered calls by key, in one SQLite file (WAL, a connection per thread)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as con:
            con.execute(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0)
            enable_wal(con)
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    def get(self, key: str) -> ChatResult | None:
        row = (
            self._connection()
            .execute("SELECT result_json FROM calls WHERE call_key = ?", (key,))
            .fetchone()
        )
        return None if row is None else decode_result(row[0])

    def put(self, key: str, result: ChatResult, now: datetime) -> None:
        """Keep ``result`` (committed before this returns); a key already kept is left as is."""
        with self._connection() as con:
            con.execute(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?)",
                (key, *encode_result(result), now.isoformat()),
            )

    def count(self) -> int:
        row = self._connection().execute("SELECT COUNT(*) FROM calls").fetchone()
        return int(row[0])

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Drop entries older than ``keep``; returns how many."""
        with self._connection() as con:
            cur = con.execute("DELETE FROM calls WHERE created_at < ?", ((now - keep).isoformat(),))
        return int(cur.rowcount)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
