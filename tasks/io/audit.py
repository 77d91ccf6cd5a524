"""The audit trail: append-only JSON lines, each entry hash-chained to the one before and MAC'd.

    hash_n = sha256(hash_{n-1} + canonical_json({"seq": n, "at": ..., "entry": {...}}))
    mac_n  = HMAC-SHA256(key, "entry:" + hash_n)
    head   = {"seq": n, "hash": hash_n, "mac": HMAC-SHA256(key, "head:" + n + ":" + hash_n)}

Invariants ``verify`` proves, given the key:

* no entry was edited, removed, inserted or moved (the sha256 chain);
* no entry was appended by anyone without the key (every entry carries its MAC, so a forged
  entry with a perfectly recomputed chain still fails);
* the tail was not cut off: ``head.json`` names the last entry, and its MAC cannot be derived
  from an entry's (the two MACs are domain-separated), so a truncated trail cannot get a
  matching head without the key;
* every *anchor* (a head recorded elsewhere, e.g. in the lake beside the decisions it covers)
  still matches: a trail rolled back to an older head, or deleted and rebuilt, is caught there.

Whoever holds the key can still rewrite everything; that is why anchors live outside the trail
and why the key comes from the environment. Appends hold an exclusive lock: a ``flock`` on
``trail.lock`` (threads and processes of one host), or with ``PHARMALANE_DATABASE_URL`` a
PostgreSQL advisory lock (every host: ``AdvisoryLock`` in ``tasks/io/postgres.py``); they
check the signed head against the trail's last line only (seq, hash, MAC: the
same cost however long the trail), write the whole batch in one ``O_APPEND`` write, fsync,
then replace the head atomically. An edit further back is ``verify``'s to find, and it does.
An append carrying ``key`` fields skips keys already in the trail (looked up in the key
index ``keys.sqlite``), so a retried step does not write the same decision twice.

Entries are reasons of record, not documents: values are scalars or lists of scalars, and a
string longer than ``MAX_TEXT`` is refused so that free text cannot leak in by accident.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from tasks.errors import ConfigError, DataContractError

GENESIS = "0" * 64
MAX_TEXT = 200
MIN_KEY_BYTES = 32
_SCALARS = (str, int, float, bool, type(None))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((previous + canonical_json(body)).encode("utf-8")).hexdigest()


def entry_mac(key: bytes, digest: str) -> str:
    return hmac.new(key, f"entry:{digest}".encode(), hashlib.sha256).hexdigest()


def head_mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last entry the trail holds: what an anchor records."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Anchor:
    """A head recorded outside the trail; ``label`` names where (workflow, run) for errors."""

    seq: int
    hash: str
    label: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number of the first entry that fails
    problem: str = ""


def dev_key(path: Path) -> bytes:
    """A random key kept in ``path`` (mode 0600), created on first use. For dev only.

    Anyone who can read the file can forge entries, so production sets the key in the
    environment instead. Created by writing a temp file and hard-linking it into place, so two
    processes starting at once agree on one key.

    Raises:
        ConfigError: the file is readable by others than its owner.
    """
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_hex(MIN_KEY_BYTES).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; its key is the key
        finally:
            tmp.unlink()
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by other users: chmod 600 {path}")
    return path.read_bytes().strip()


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


def _tail_problem(line: bytes, seq: int, digest: str, key: bytes) -> tuple[str, int]:
    """What is wrong with ``line`` as the entry a signed head (seq, digest) names, and where."""
    if seq <= 0 or not line:
        return ("the trail is empty but head.json names entries", 1) if seq > 0 else ("", 0)
    try:
        record = json.loads(line)
        body = {"seq": record["seq"], "at": record["at"], "entry": record["entry"]}
        prev, stored, mac = record["prev"], record["hash"], record.get("mac")
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable last entry: {exc}", seq
    if record["seq"] != seq:
        found = int(record["seq"]) if isinstance(record["seq"], int) else 0
        return f"head records {seq} entries, the trail's last entry is {found}", min(found, seq) + 1
    if stored != digest or chain_hash(str(prev), body) != digest:
        return "hash mismatch: the last entry is not the one head.json names", seq
    if not isinstance(mac, str) or not hmac.compare_digest(mac, entry_mac(key, digest)):
        return "MAC mismatch: last entry not written with the audit key", seq
    return "", 0


class KeyIndex:
    """The keys the trail holds, so an append skips a written key without reading the trail.

    ``keys.sqlite`` beside the trail, written only under the trail's lock, after the trail and
    head. It records how far (seq, byte offset) it covers; an append first reads the lines
    past that offset (none, unless a process died between writing the trail and the index), so
    the index can lag but never miss a key. ``verify`` checks every indexed key is in the trail.
    """

    def __init__(self, path: Path):
        self.con = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.con.executescript(
            "CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS covered (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " seq INTEGER NOT NULL, offset INTEGER NOT NULL);"
        )

    def close(self) -> None:
        self.con.close()

    def covered(self) -> tuple[int, int]:
        row = self.con.execute("SELECT seq, offset FROM covered WHERE id = 1").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def catch_up(self, trail: Path, seq: int) -> int:
        """Index the lines past the covered offset (all of them if the index is ahead or
        lost); return how many lines were read."""
        done, offset = self.covered()
        if done == seq:
            return 0
        size = trail.stat().st_size if trail.is_file() else 0
        if done > seq or offset > size:
            self.con.execute("DELETE FROM keys")
            offset = 0
        lines = []
        if size > offset:
            with trail.open("rb") as handle:
                handle.seek(offset)
                lines = handle.read(size - offset).splitlines()
        found = [json.loads(line)["entry"].get("key") for line in lines if line.strip()]
        self.add([k for k in found if k is not None], seq=seq, offset=size)
        return len(lines)

    def has(self, key: Any) -> bool:
        row = self.con.execute("SELECT 1 FROM keys WHERE key = ?", (canonical_json(key),))
        return row.fetchone() is not None

    def add(self, keys: Sequence[Any], *, seq: int, offset: int) -> None:
        self.con.execute("BEGIN IMMEDIATE")
        self.con.executemany(
            "INSERT OR IGNORE INTO keys (key) VALUES (?)", [(canonical_json(k),) for k in keys]
        )
        self.con.execute(
            "INSERT OR REPLACE INTO covered (id, seq, offset) VALUES (1, ?, ?)", (seq, offset)
        )
        self.con.execute("COMMIT")

    def all(self) -> set[str]:
        return {row[0] for row in self.con.execute("SELECT key FROM keys")}


class AuditTrail:
    """The trail in ``folder``: ``trail.jsonl``, ``head.json`` and a lock file.

    Reading entries needs no key; appending and verifying do (``ConfigError`` without one).
    """

    def __init__(
        self,
        folder: Path,
        key: bytes | None = None,
        *,
        lock: Callable[[], AbstractContextManager[None]] | None = None,
    ):
        self.folder = folder
        self.trail = folder / "trail.jsonl"
        self.head = folder / "head.json"
        self._key = key
        self._lock = lock  # None: flock on trail.lock; else e.g. a PostgreSQL advisory lock
        self.lines_read = 0  # trail lines parsed by appends: constant per append, tests count

    @property
    def key(self) -> bytes:
        if not self._key:
            raise ConfigError(
                "the audit trail needs its key: set PHARMALANE_AUDIT_KEY "
                f"(at least {MIN_KEY_BYTES} characters)"
            )
        return self._key

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._lock is not None:
            with self._lock():
                yield
            return
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

        Costs the same however long the trail is: it checks the signed head against the last
        line only (``_checked_tail``) and looks keys up in the key index. The whole chain is
        ``verify``'s job (``pharmalane audit verify``).

        Raises:
            ConfigError: no key.
            DataContractError: an entry holds a non-scalar value or free text; the trail's
                tail does not match its signed head (run ``pharmalane audit verify``).
        """
        key = self.key
        for entry in entries:
            _check_entry(entry)
        with self._locked():
            previous, seq = self._checked_tail(key)
            with self._key_index(seq) as index:
                out: list[str] = []
                written_keys: list[str] = []
                written: set[str] = set()  # beside the list: a lookup in O(1), not O(batch)
                for entry in entries:
                    entry_key = entry.get("key")
                    if entry_key is not None:
                        if entry_key in written or index.has(entry_key):
                            continue
                        written_keys.append(entry_key)
                        written.add(entry_key)
                    seq += 1
                    body = {"seq": seq, "at": now.isoformat(), "entry": dict(entry)}
                    digest = chain_hash(previous, body)
                    mac = entry_mac(key, digest)
                    line = {**body, "prev": previous, "hash": digest, "mac": mac}
                    out.append(canonical_json(line))
                    previous = digest
                if not out:
                    return 0
                end = self._write(out)
                self._write_head(seq, previous, key)
                index.add(written_keys, seq=seq, offset=end)
            return len(out)

    def _write_head(self, seq: int, digest: str, key: bytes) -> None:
        head = {"seq": seq, "hash": digest, "mac": head_mac(key, seq, digest)}
        tmp = self.head.with_name(f".head.json.tmp-{os.getpid()}")
        tmp.write_text(canonical_json(head), encoding="utf-8")
        tmp.replace(self.head)

    def _checked_tail(self, key: bytes) -> tuple[str, int]:
        """(hash, seq) of the signed head, once its MAC and the trail's last line agree.

        Raises:
            DataContractError: head unsigned, unreadable or missing beside a trail, or the
                last line is not the entry the head names (cut, torn, forged or edited).
        """
        record = self._head_record()
        if record is None:
            if self.trail.is_file() and self.trail.stat().st_size:
                self._broken(1, "head.json is missing beside a trail")
            return GENESIS, 0
        seq, digest = int(record.get("seq", -1) or -1), str(record.get("hash", ""))
        if not record or not hmac.compare_digest(
            str(record.get("mac", "")), head_mac(key, seq, digest)
        ):
            self._broken(max(seq, 1), "head.json is not signed with the audit key")
        problem, at = _tail_problem(self._last_line(), seq, digest, key)
        if problem:
            self._broken(at, problem)
        return digest, seq

    def _broken(self, at: int, problem: str) -> NoReturn:
        raise DataContractError(
            f"the audit trail is broken at entry {at}: {problem} (run `pharmalane audit verify`)",
            record=str(self.trail),
        )

    def _last_line(self) -> bytes:
        """The trail's last line, read backwards from the end: one line, whatever the length."""
        if not self.trail.is_file():
            return b""
        with self.trail.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            block, data = 4096, b""
            position = end
            while position > 0:
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                if data.rstrip(b"\n").count(b"\n"):
                    break
        self.lines_read += 1
        return data.rstrip(b"\n").rsplit(b"\n", 1)[-1]

    @contextmanager
    def _key_index(self, seq: int) -> Iterator[KeyIndex]:
        index = KeyIndex(self.folder / "keys.sqlite")
        try:
            self.lines_read += index.catch_up(self.trail, seq)
            yield index
        finally:
            index.close()

    def _write(self, lines: list[str]) -> int:
        """Append ``lines`` in one write; return the file's size after it."""
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = os.open(self.trail, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _head_record(self) -> dict[str, Any] | None:
        if not self.head.is_file():
            return None
        try:
            record = json.loads(self.head.read_text(encoding="utf-8"))
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _tail(self) -> tuple[str, int]:
        record = self._head_record()
        if not record:
            return GENESIS, 0
        return str(record.get("hash", "")), int(record.get("seq", -1))

    @staticmethod
    def _keys(lines: list[bytes]) -> set[Any]:
        return {json.loads(line)["entry"].get("key") for line in lines if line.strip()} - {None}

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line)["entry"] for line in self._lines()]

    def last(self) -> Head | None:
        """The head as ``head.json`` records it (None for an empty trail), for anchoring."""
        with self._locked():
            previous, seq = self._tail()
        return Head(seq, previous) if seq > 0 else None

    def verify(self, anchors: Sequence[Anchor] = ()) -> Verification:
        """Check chain, MACs, head and ``anchors``; name the first thing that does not hold.

        Raises:
            ConfigError: no key.
        """
        key = self.key
        with self._locked():
            lines = self._lines()
            result = self._verify_lines(lines, key, anchors)
            if result.ok:
                result = self._verify_key_index(lines) or result
        return result

    def _verify_key_index(self, lines: list[bytes]) -> Verification | None:
        """An indexed key the trail does not hold would make an append skip a real entry."""
        path = self.folder / "keys.sqlite"
        if not path.is_file():
            return None
        index = KeyIndex(path)
        try:
            extra = index.all() - {canonical_json(k) for k in self._keys(lines)}
        finally:
            index.close()
        if not extra:
            return None
        problem = f"keys.sqlite lists {len(extra)} keys the trail does not hold: {min(extra)}"
        return Verification(False, len(lines), len(lines), problem)

    def _verify_lines(
        self, lines: list[bytes], key: bytes, anchors: Sequence[Anchor] = ()
    ) -> Verification:
        wanted = {a.seq for a in anchors}
        broken, previous, hashes = _verify_chain(lines, key, wanted)
        if broken is not None:
            return broken
        n = len(lines)
        record = self._head_record()
        if record is not None and not record:
            return Verification(False, n, n + 1, "head.json is unreadable")
        last, seq = self._tail()
        if seq != n or last != previous:
            return Verification(
                False,
                n,
                max(0, min(seq, n)) + 1,
                f"head records {seq} entries, the trail holds {n}: "
                "entries were removed or added outside pharmalane",
            )
        signed = str((record or {}).get("mac", ""))
        if n and not hmac.compare_digest(signed, head_mac(key, n, last)):
            return Verification(
                False,
                n,
                n,
                "head.json is not signed with the audit key: rewritten outside pharmalane "
                "(or the key changed)",
            )
        return _check_anchors(anchors, hashes, n) or Verification(True, n)


def _verify_chain(
    lines: list[bytes], key: bytes, wanted: set[int]
) -> tuple[Verification | None, str, dict[int, str]]:
    """Recompute the chain and every entry's MAC; keep the hashes at ``wanted`` seqs."""
    previous, hashes = GENESIS, dict[int, str]()
    for number, line in enumerate(lines, start=1):
        done = number - 1
        try:
            record = json.loads(line)
            body = {"seq": record["seq"], "at": record["at"], "entry": record["entry"]}
            stored, mac = record["hash"], record.get("mac")
        except (ValueError, KeyError, TypeError) as exc:
            return Verification(False, done, number, f"unreadable entry: {exc}"), previous, hashes
        if record["seq"] != number:
            problem = f"sequence {record['seq']} where {number} belongs"
            return Verification(False, done, number, problem), previous, hashes
        if record.get("prev") != previous:
            problem = "chain broken: entry moved or lost"
            return Verification(False, done, number, problem), previous, hashes
        previous = chain_hash(previous, body)
        if stored != previous:
            problem = "hash mismatch: entry altered"
            return Verification(False, done, number, problem), previous, hashes
        if not isinstance(mac, str) or not hmac.compare_digest(mac, entry_mac(key, previous)):
            problem = "MAC mismatch: entry not written with the audit key (forged or re-hashed)"
            return Verification(False, done, number, problem), previous, hashes
        if number in wanted:
            hashes[number] = previous
    return None, previous, hashes


def _check_anchors(
    anchors: Sequence[Anchor], hashes: Mapping[int, str], entries: int
) -> Verification | None:
    """The first anchor the trail no longer matches (beyond its end, or another hash)."""
    for anchor in sorted(anchors, key=lambda a: (a.seq, a.label)):
        if anchor.seq > entries:
            return Verification(
                False,
                entries,
                entries + 1,
                f"anchor {anchor.label} records entry {anchor.seq}, the trail holds {entries}: "
                "entries were removed (trail cut back or rebuilt)",
            )
        if not hmac.compare_digest(hashes.get(anchor.seq, ""), anchor.hash):
            return Verification(
                False,
                entries,
                anchor.seq,
                f"anchor {anchor.label} records another hash for entry {anchor.seq}: "
                "the trail was rewritten",
            )
    return None
