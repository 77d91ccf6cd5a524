"""Two intake processes on one PHARMALANE_HOME: one rate limit, no case lost or doubled.

Each process is a real subprocess with its own app, store and model
(``tests/triage_intake_worker.py``); both start submitting at the same moment: the same case
ids from the same key, contested case ids from two keys, and reads that spend one shared
rate-limit bucket.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.triage_intake_worker import CONTESTED, RATE_PER_MINUTE, READS, SHARED

REPO = Path(__file__).resolve().parents[2]
WORKERS = ("one", "two")


def run_workers(home: Path) -> dict[str, dict]:
    home.mkdir(parents=True)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tests.triage_intake_worker", str(home), name],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
        )
        for name in WORKERS
    }
    try:
        deadline = time.monotonic() + 300
        while not all((home / f"{n}.ready").exists() for n in WORKERS):
            failed = [p for p in procs.values() if p.poll() is not None]
            if failed:
                raise RuntimeError(f"a worker did not start: {failed[0].communicate()[1]!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start within 300 s")
            time.sleep(0.05)
        (home / "go").touch()
        for proc in procs.values():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err.decode()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {n: json.loads((home / f"{n}.json").read_text()) for n in WORKERS}


@pytest.mark.slow
def test_two_processes_share_one_rate_limit_and_lose_or_double_no_case(tmp_path):
    home = tmp_path / "home"
    results = run_workers(home)
    one, two = (results[n]["answers"] for n in WORKERS)

    # one rate limit: 2 x 40 reads against a bucket of 60 grant exactly 60 between them
    reads = results["one"]["reads"] + results["two"]["reads"]
    assert len(reads) == 2 * READS
    assert (reads.count(404), reads.count(429)) == (RATE_PER_MINUTE, 2 * READS - RATE_PER_MINUTE)

    # the same report from the same key: stored once, created by exactly one process
    for case_id in SHARED:
        pair = (one[case_id], two[case_id])
        assert [a["status"] for a in pair] == [200, 200]
        assert sorted(a["replay"] for a in pair) == ["false", "true"]
        assert pair[0]["body"] == pair[1]["body"]

    # one id, two keys, two reports: one is stored, the other sender gets 409; none replayed
    db = sqlite3.connect(home / "triage" / "cases.sqlite")
    owners = dict(db.execute("SELECT case_id, submitter FROM cases WHERE case_id LIKE 'T-%'"))
    for case_id in CONTESTED:
        pair = {"k-a": one[case_id], "k-b": two[case_id]}
        assert sorted(a["status"] for a in pair.values()) == [200, 409]
        winner = next(key for key, a in pair.items() if a["status"] == 200)
        assert owners[case_id] == winner and pair[winner]["replay"] == "false"
        assert (pair[winner]["body"]["serious"] is True) == (winner == "k-a")  # its own report

    ids = [r[0] for r in db.execute("SELECT case_id FROM cases")]
    assert sorted(ids) == sorted(SHARED + CONTESTED)  # none lost, none doubled
