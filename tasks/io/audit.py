"""The audit trail: append-only JSON lines, each entry hash-chained to the one before.

    hash_n = sha256(hash_{n-1} + canonical_json({"seq": n, "at": ..., "entry": {...}}))

A ``head.json`` beside the trail records the last sequence number and hash, so deleting
entries at the end is caught as well as any edit, deletion, insertion or reordering inside.
Appends hold an exclusive ``flock`` (threads and processes), write the whole batch in one
``O_APPEND`` write, fsync, then replace the head atomically. An append carrying ``key`` fields
skips keys already in the trail, so a retried step does not write the same decision twice.

Entries are reasons of record, not documents: values are scalars or lists of scalars, and a
string longer than ``MAX_TEXT`` is refused so that free text cannot leak in by accident.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.errors import DataContractError

GENESIS = "0" * 64
MAX_TEXT = 200
_SCALARS = (str, int, float, bool, type(None))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((previous + canonical_json(body)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number of the first entry that fails
    problem: str = ""


def _check_entry(entry: Mapping[str, Any]) -> None:
    record = str(entry.get("key", entry.get("item_id", "?")))
    for field, value in entry.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, _SCALARS):
                raise DataContractError(
                    f"audit values are scalars or lists of scalars, got {type(item).__name__}",
                    record=record,
                    field=field,
                )
            if isinstance(item, str) and len(item) > MAX_TEXT:
                raise DataContractError(
                    f"audit strings are codes, not free text (>{MAX_TEXT} chars)",
                    record=record,
                    field=field,
                )


class AuditTrail:
    """The trail in ``folder``: ``trail.jsonl``, ``head.json`` and a lock file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.trail = folder / "trail.jsonl"
        self.head = folder / "head.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "trail.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _lines(self) -> list[bytes]:
        return self.trail.read_bytes().splitlines() if self.trail.is_file() else []

    def append(self, entries: Sequence[Mapping[str, Any]], *, now: datetime) -> int:
        """Append ``entries`` (skipping keys already present); return how many were written.

        Raises:
            DataContractError: an entry holds a non-scalar value or free text; the trail
                itself is broken (run ``pharmalane audit verify``).
        """
        for entry in entries:
            _check_entry(entry)
        with self._locked():
            state = self._verify_lines(self._lines())
            if not state.ok:
                raise DataContractError(
                    f"the audit trail is broken at entry {state.first_bad}: {state.problem}",
                    record=str(self.trail),
                )
            seen = self._keys()
            previous, seq = self._tail()
            out: list[str] = []
            for entry in entries:
                key = entry.get("key")
                if key is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                seq += 1
                body = {"seq": seq, "at": now.isoformat(), "entry": dict(entry)}
                digest = chain_hash(previous, body)
                out.append(canonical_json({**body, "prev": previous, "hash": digest}))
                previous = digest
            if not out:
                return 0
            self._write(out)
            tmp = self.head.with_name(f".head.json.tmp-{os.getpid()}")
            tmp.write_text(canonical_json({"seq": seq, "hash": previous}), encoding="utf-8")
            tmp.replace(self.head)
            return len(out)

    def _write(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = os.open(self.trail, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _tail(self) -> tuple[str, int]:
        if not self.head.is_file():
            return GENESIS, 0
        head = json.loads(self.head.read_text(encoding="utf-8"))
        return str(head["hash"]), int(head["seq"])

    def _keys(self) -> set[Any]:
        return {json.loads(line)["entry"].get("key") for line in self._lines() if line.strip()} - {
            None
        }

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line)["entry"] for line in self._lines()]

    def verify(self) -> Verification:
        """Recompute the chain; name the first entry that was edited, removed, added or moved."""
        with self._locked():
            return self._verify_lines(self._lines())

    def _verify_lines(self, lines: list[bytes]) -> Verification:
        previous = GENESIS
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                body = {"seq": record["seq"], "at": record["at"], "entry": record["entry"]}
                stored = record["hash"]
            except (ValueError, KeyError, TypeError) as exc:
                return Verification(False, number - 1, number, f"unreadable entry: {exc}")
            if record["seq"] != number:
                return Verification(
                    False, number - 1, number, f"sequence {record['seq']} where {number} belongs"
                )
            if record.get("prev") != previous:
                return Verification(False, number - 1, number, "chain broken: entry moved or lost")
            previous = chain_hash(previous, body)
            if stored != previous:
                return Verification(False, number - 1, number, "hash mismatch: entry altered")
        last, seq = self._tail()
        if seq != len(lines) or last != previous:
            return Verification(
                False,
                len(lines),
                min(seq, len(lines)) + 1,
                f"head records {seq} entries, the trail holds {len(lines)}: "
                "entries were removed or added outside pharmalane",
            )
        return Verification(True, len(lines))
