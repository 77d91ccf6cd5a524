"""The hash-chained audit trail on a real file: any edit, deletion, insertion or move is named."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.errors import ConfigError, DataContractError
from tasks.io.audit import Anchor, AuditTrail, KeyIndex, chain_hash, dev_key

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
KEY = b"k" * 32


def _entry(i: int) -> dict[str, object]:
    return {
        "key": f"decision:pmid-{i}:h{i}",
        "item_id": f"pmid-{i}",
        "decision": "escalated" if i % 2 else "closed_negative",
        "reason_codes": ["PLAN_ESCALATE"],
        "probability": i / 100,
    }


@pytest.fixture
def trail(tmp_path: Path) -> AuditTrail:
    audit = AuditTrail(tmp_path / "audit", KEY)
    assert audit.append([_entry(i) for i in range(1, 6)], now=NOW) == 5
    return audit


def _rewrite(audit: AuditTrail, lines: list[str]) -> None:
    audit.trail.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_intact_trail_verifies_and_keys_are_written_once(trail):
    assert trail.verify().ok
    assert trail.append([_entry(3), _entry(6)], now=NOW) == 1
    result = trail.verify()
    assert (result.ok, result.entries) == (True, 6)
    assert [e["item_id"] for e in trail.entries()] == [f"pmid-{i}" for i in range(1, 7)]


def _edit(lines: list[str]) -> list[str]:
    record = json.loads(lines[2])
    record["entry"]["decision"] = (
        "closed_negative" if record["entry"]["decision"] != "closed_negative" else "escalated"
    )
    return [*lines[:2], json.dumps(record), *lines[3:]]


@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"),
    [
        (_edit, 3, "hash mismatch"),
        (lambda lines: lines[:1] + lines[2:], 2, "sequence 3 where 2 belongs"),  # deletion
        (lambda lines: [*lines[:2], lines[1], *lines[2:]], 3, "sequence 2 where 3"),  # insertion
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2, "sequence 3"),  # reorder
        (lambda lines: lines[:4], 5, "head records 5 entries, the trail holds 4"),  # truncation
        (lambda lines: [*lines[:4], lines[4][:-20]], 5, "unreadable"),  # torn write
    ],
    ids=["edit", "delete", "insert", "reorder", "truncate", "torn"],
)
def test_tampering_is_detected_at_the_first_bad_entry(trail, tamper, first_bad, problem):
    _rewrite(trail, tamper(trail.trail.read_text(encoding="utf-8").splitlines()))
    result = trail.verify()
    assert not result.ok
    assert result.first_bad == first_bad
    assert problem in result.problem
    if first_bad == 5:  # the tail: an append checks the signed head against the last line
        with pytest.raises(DataContractError, match=f"broken at entry {first_bad}"):
            trail.append([_entry(99)], now=NOW)
    else:  # further back: only `verify` reads that far, and an append hides nothing from it
        trail.append([_entry(99)], now=NOW)
        assert (trail.verify().ok, trail.verify().first_bad) == (False, first_bad)


def test_recomputing_one_hash_does_not_hide_an_edit(trail):
    lines = trail.trail.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[1])
    record["entry"]["decision"] = "case_candidate"
    body = {k: record[k] for k in ("seq", "at", "entry")}
    record["hash"] = chain_hash(record["prev"], body)
    _rewrite(trail, [lines[0], json.dumps(record), *lines[2:]])
    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 2)  # its MAC needs the key
    assert "MAC mismatch" in result.problem


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"item_id": "pmid-1", "abstract": "x" * 500}, "abstract"),
        ({"item_id": "pmid-1", "facts": {"nested": 1}}, "facts"),
    ],
)
def test_free_text_and_nested_values_are_refused(tmp_path, entry, field):
    with pytest.raises(DataContractError, match=f"record pmid-1, field {field}"):
        AuditTrail(tmp_path, KEY).append([entry], now=NOW)
    assert not (tmp_path / "trail.jsonl").exists()


def _append_block(folder: str, start: int) -> int:
    return AuditTrail(Path(folder), KEY).append(
        [_entry(i) for i in range(start, start + 10)], now=NOW
    )


def test_concurrent_appenders_keep_one_valid_chain(tmp_path):
    folder = str(tmp_path / "audit")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as procs, ThreadPoolExecutor(6) as threads:
        futures = [procs.submit(_append_block, folder, s) for s in (0, 10)]
        futures += [threads.submit(_append_block, folder, s) for s in range(20, 80, 10)]
        assert sum(f.result() for f in futures) == 80
    result = AuditTrail(Path(folder), KEY).verify()
    assert (result.ok, result.entries) == (True, 80)


# --- attacks that passed `audit verify` before the MACs and anchors ---------------------------


def _lines(audit: AuditTrail) -> list[str]:
    return audit.trail.read_text(encoding="utf-8").splitlines()


def _head(audit: AuditTrail) -> dict[str, object]:
    return json.loads(audit.head.read_text(encoding="utf-8"))


def test_truncation_with_a_rewritten_head_is_caught(trail):
    """Delete the last two entries and write head.json for the three that remain."""
    kept = _lines(trail)[:3]
    third = json.loads(kept[2])
    _rewrite(trail, kept)
    trail.head.write_text(json.dumps({"seq": 3, "hash": third["hash"]}))  # no key: no MAC
    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 3)
    assert "head.json is not signed with the audit key" in result.problem
    # nor can the entry's own MAC be reused as the head's: the two are domain-separated
    trail.head.write_text(json.dumps({"seq": 3, "hash": third["hash"], "mac": third["mac"]}))
    assert "not signed" in trail.verify().problem


def test_a_forged_entry_with_a_valid_chain_is_caught(trail):
    """Append an entry whose prev, hash and seq are all right; only the key is missing."""
    lines = _lines(trail)
    last = json.loads(lines[-1])
    body = {"seq": 6, "at": NOW.isoformat(), "entry": _entry(66) | {"decision": "closed_negative"}}
    digest = chain_hash(last["hash"], body)
    forged = {**body, "prev": last["hash"], "hash": digest, "mac": "0" * 64}
    _rewrite(trail, [*lines, json.dumps(forged)])
    trail.head.write_text(json.dumps({"seq": 6, "hash": digest}))
    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 6)
    assert "MAC mismatch" in result.problem
    with pytest.raises(DataContractError, match="broken at entry 6"):
        trail.append([_entry(7)], now=NOW)


def test_another_key_does_not_verify_and_no_key_refuses(trail):
    result = AuditTrail(trail.folder, b"x" * 32).verify()
    assert (result.ok, result.first_bad) == (False, 1)
    assert "MAC mismatch" in result.problem
    with pytest.raises(ConfigError, match="PHARMALANE_AUDIT_KEY"):
        AuditTrail(trail.folder).append([_entry(9)], now=NOW)
    with pytest.raises(ConfigError, match="PHARMALANE_AUDIT_KEY"):
        AuditTrail(trail.folder).verify()
    assert len(AuditTrail(trail.folder).entries()) == 5  # reading needs no key


def test_a_saved_head_restored_after_truncation_is_caught_by_an_anchor(trail):
    """An old head.json carries a valid MAC; the anchor recorded later does not match it."""
    old_lines, old_head = _lines(trail)[:5], trail.head.read_text()
    old_index = (trail.folder / "keys.sqlite").read_bytes()
    trail.append([_entry(i) for i in range(6, 9)], now=NOW)
    later = trail.last()
    assert later is not None and later.seq == 8
    anchor = Anchor(later.seq, later.hash, "urgent-ae-triage/run-7")
    assert trail.verify([anchor]).ok
    _rewrite(trail, old_lines)
    trail.head.write_text(old_head)
    assert "keys the trail does not hold" in trail.verify().problem  # the key index remembers
    (trail.folder / "keys.sqlite").write_bytes(old_index)  # so a careful forger rolls it back
    assert trail.verify().ok  # alone, the trail cannot tell: that is what anchors are for
    result = trail.verify([anchor])
    assert (result.ok, result.first_bad) == (False, 6)
    assert "anchor urgent-ae-triage/run-7 records entry 8, the trail holds 5" in result.problem


def test_an_anchor_with_another_hash_names_the_rewritten_entry(trail):
    anchor = Anchor(3, "f" * 64, "nightly-literature-scan/run-1")
    result = trail.verify([anchor])
    assert (result.ok, result.first_bad) == (False, 3)
    assert "anchor nightly-literature-scan/run-1 records another hash for entry 3" in result.problem


def test_dev_key_is_private_stable_and_refused_when_readable(tmp_path):
    path = tmp_path / "secrets" / "audit-dev.key"
    first = dev_key(path)
    assert len(first) == 64 and dev_key(path) == first
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        dev_key(path)


# --- appends at constant cost -----------------------------------------------------------------


def test_an_append_reads_one_line_however_long_the_trail(tmp_path):
    audit = AuditTrail(tmp_path / "audit", KEY)
    reads = []
    for block in range(6):  # the trail grows 1, 11, 111 ... entries long
        audit.append([_entry(10_000 + block)], now=NOW)
        size = 10**block
        audit.append([_entry(block * 1_000_000 + i) for i in range(size)], now=NOW)
        before = audit.lines_read
        assert audit.append([_entry(-1 - block), _entry(block * 1_000_000)], now=NOW) == 1
        reads.append(audit.lines_read - before)
    assert reads == [1] * 6  # the last line only; keys come from the index
    assert audit.verify().ok and audit.verify().entries == len(audit.entries())


def test_an_edited_last_entry_with_a_recomputed_hash_is_refused_on_append(trail):
    lines = _lines(trail)
    record = json.loads(lines[-1])
    record["entry"]["decision"] = "case_candidate"
    record["hash"] = chain_hash(record["prev"], {k: record[k] for k in ("seq", "at", "entry")})
    _rewrite(trail, [*lines[:-1], json.dumps(record)])
    with pytest.raises(DataContractError, match="broken at entry 5: hash mismatch"):
        trail.append([_entry(6)], now=NOW)


def test_a_lost_key_index_is_rebuilt_and_still_writes_each_key_once(trail):
    (trail.folder / "keys.sqlite").unlink()  # e.g. a crash before the index was written
    assert trail.append([_entry(2), _entry(6)], now=NOW) == 1
    assert [e["item_id"] for e in trail.entries()][-1] == "pmid-6"
    assert trail.verify().ok


def test_a_key_slipped_into_the_index_is_caught_by_verify(trail):
    index = KeyIndex(trail.folder / "keys.sqlite")
    index.add(["decision:pmid-7:h7"], seq=5, offset=trail.trail.stat().st_size)
    index.close()
    assert trail.append([_entry(7)], now=NOW) == 0  # the append trusts the index ...
    result = trail.verify()  # ... and verify, which reads everything, does not
    assert not result.ok and "keys the trail does not hold" in result.problem
