"""Worker processes of ``test_triage_store_contract.py`` (spawned: importable top-level code)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tasks.errors import CaseConflict
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.sealing import Sealer
from tasks.io.shared_state import open_triage_store
from tasks.io.triage_store import TriageCases

NARRATIVE = "Patient Quetzalia Brightwater collapsed after the second infusion of Xanomeline"
THREADS = 4  # per process: an API replica's request threads


def case(case_id: str, narrative: str = NARRATIVE) -> IcsrCase:
    return IcsrCase.model_validate(
        {
            "case_id": case_id,
            "received_at": "2026-03-02T09:00:00+00:00",
            "patient": {"initials": "QZB", "age_years": 61, "sex": "F"},
            "suspect_drugs": ["Xanomeline"],
            "narrative": narrative,
        }
    )


def decision(case_id: str, status: str = "held_for_review", reason: str = "TEST") -> TriageDecision:
    return TriageDecision(
        case_id=case_id, status=status, lane="hot", valid=True, missing=[],
        seriousness=[], serious=False, severity=None, narrative_flags=[], narrative_score=None,
        duplicate_of=None, clock_days=15, day_zero=date(2026, 3, 2), due_date=date(2026, 3, 17),
        requires_review=True, reasons=[reason], model=None, input_tokens=0, cost_usd=0.0,
        decided_at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC),
    )  # fmt: skip


def store(url: str | None, home: str, keys: list[bytes]) -> TriageCases:
    return open_triage_store(url, Path(home) / "triage" / "cases.sqlite", Sealer(keys))


def replica(
    url: str | None, home: str, keys: list[bytes], replica_id: int, barrier: Any, results: Any
) -> None:
    """One API replica: its threads post case DUP-1 at one barrier, each as its submitter.

    Replica 0's threads send the report as k-a; replica 1's threads send a different report
    (another narrative) under the same id as k-b. Reports (replica, created, status or
    "conflict") per thread.
    """
    own = store(url, home, keys)
    submitter = ("k-a", "k-b")[replica_id]
    report = case("DUP-1", NARRATIVE if replica_id == 0 else "Mild itching, resolved.")
    outs: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        try:
            stored, created = own.accept(report, "fp-dup", decision("DUP-1"), submitter=submitter)
            out = (replica_id, "created" if created else "replayed", stored.status)
        except CaseConflict:
            out = (replica_id, "conflict", "")
        with lock:
            outs.append(out)

    threads = [threading.Thread(target=post) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(outs)
