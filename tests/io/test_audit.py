"""The hash-chained audit trail on a real file: any edit, deletion, insertion or move is named."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.errors import DataContractError
from tasks.io.audit import AuditTrail

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


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
    audit = AuditTrail(tmp_path / "audit")
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
    with pytest.raises(DataContractError, match=f"broken at entry {first_bad}"):
        trail.append([_entry(99)], now=NOW)


def test_recomputing_one_hash_does_not_hide_an_edit(trail):
    from tasks.io.audit import chain_hash

    lines = trail.trail.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[1])
    record["entry"]["decision"] = "case_candidate"
    body = {k: record[k] for k in ("seq", "at", "entry")}
    record["hash"] = chain_hash(record["prev"], body)
    _rewrite(trail, [lines[0], json.dumps(record), *lines[2:]])
    result = trail.verify()
    assert (result.ok, result.first_bad) == (False, 3)
    assert "chain broken" in result.problem


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"item_id": "pmid-1", "abstract": "x" * 500}, "abstract"),
        ({"item_id": "pmid-1", "facts": {"nested": 1}}, "facts"),
    ],
)
def test_free_text_and_nested_values_are_refused(tmp_path, entry, field):
    with pytest.raises(DataContractError, match=f"record pmid-1, field {field}"):
        AuditTrail(tmp_path).append([entry], now=NOW)
    assert not (tmp_path / "trail.jsonl").exists()


def _append_block(folder: str, start: int) -> int:
    return AuditTrail(Path(folder)).append([_entry(i) for i in range(start, start + 10)], now=NOW)


def test_concurrent_appenders_keep_one_valid_chain(tmp_path):
    folder = str(tmp_path / "audit")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as procs, ThreadPoolExecutor(6) as threads:
        futures = [procs.submit(_append_block, folder, s) for s in (0, 10)]
        futures += [threads.submit(_append_block, folder, s) for s in range(20, 80, 10)]
        assert sum(f.result() for f in futures) == 80
    result = AuditTrail(Path(folder)).verify()
    assert (result.ok, result.entries) == (True, 80)
