"""The audit trail beyond its own folder: anchors in the lake, and the full verification.

A writer of decisions calls ``anchor`` after its audit entries: the head it reached goes to the
lake dataset ``audit_anchors`` (and the flow puts it in its Prefect artifact). ``verify`` then
checks the trail's chain, MACs and head, that it still holds every anchored head, and that it
is not missing while the lake holds decisions or anchors: deleting the trail does not reset it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from tasks.core.audit_entries import anchor_row
from tasks.io.audit import Anchor, Head, Verification
from tasks.io.lake import LakeStore
from tasks.io.shared_state import open_audit_trail
from tasks.schemas import AUDIT_ANCHOR
from tasks.services.runtime import Runtime, audit_key

ANCHORS = "audit_anchors"
# datasets whose rows exist only with a reason of record in the trail
DECISION_DATASETS = ("decisions", "escalations", "triage_decisions", "triage_audit", ANCHORS)


def anchor(runtime: Runtime, *, workflow: str, run_id: str, now: datetime) -> Head | None:
    """Record the trail's current head in the lake (once per distinct head); return it."""
    head = runtime.audit.last()
    if head is None:
        return None
    row = anchor_row(head.seq, head.hash, workflow=workflow, run_id=run_id, now=now)
    runtime.lake.append_new(
        ANCHORS,
        pl.DataFrame([row]),
        AUDIT_ANCHOR,
        keys=["anchor_id"],
        partition_by="day",
        stem=str(row["anchor_id"]),
    )
    return head


def head_label(head: Head | None) -> str:
    """How an artifact shows the head: ``seq:hash`` (``none`` before the first entry)."""
    return f"{head.seq}:{head.hash}" if head else "none"


@dataclass(frozen=True)
class AuditCheck:
    verification: Verification
    trail: str
    anchors: int


def verify(runtime: Runtime) -> AuditCheck:
    """Verify the trail against the lake's anchors; missing while decisions exist fails too."""
    settings, lake = runtime.settings, runtime.lake
    anchors = _anchors(lake)
    evidence = [d for d in DECISION_DATASETS if lake.files(d)]
    key = audit_key(settings, create=False)
    trail = open_audit_trail(settings.shared_database, settings.audit_dir, key)
    if key is None:
        if evidence or trail.trail.exists() or trail.head.exists():
            problem = f"no audit key ({settings.audit_dev_key_file} is missing): cannot verify"
            return AuditCheck(Verification(False, 0, 1, problem), str(trail.trail), len(anchors))
        return AuditCheck(Verification(True, 0), str(trail.trail), 0)
    result = trail.verify(anchors)
    if result.ok and result.entries == 0 and evidence:
        problem = (
            f"the trail is {'empty' if trail.trail.exists() else 'missing'} but the lake holds "
            f"{', '.join(evidence)}: the trail was deleted"
        )
        result = Verification(False, 0, 1, problem)
    return AuditCheck(result, str(trail.trail), len(anchors))


def _anchors(lake: LakeStore) -> list[Anchor]:
    rows = lake.read(ANCHORS, columns=["seq", "hash", "workflow", "run_id"])
    return [
        Anchor(int(r["seq"]), str(r["hash"]), f"{r['workflow']}/{r['run_id']}")
        for r in rows.iter_rows(named=True)
    ]
