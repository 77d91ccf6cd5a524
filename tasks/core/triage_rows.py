"""Rows the triage lane books: decisions, audit events, one ledger row per micro-batch. Pure.

No narrative and no patient field ever reaches these rows: the lake is read by reports and
dashboards, the case content stays in the intake store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
import pyarrow as pa

from tasks.core.batches import stable_id
from tasks.intake import TriageDecision
from tasks.schemas import TRIAGE_AUDIT, TRIAGE_DECISION


def _polars_schema(schema: pa.Schema) -> pl.Schema:
    return pl.DataFrame(schema.empty_table()).schema


def decision_rows(decisions: Sequence[TriageDecision]) -> pl.DataFrame:
    """One row per decision, in the TRIAGE_DECISION schema (partitioned by decision day)."""
    rows = [
        d.model_dump(include=set(TRIAGE_DECISION.names) - {"day"})
        | {"day": d.decided_at.date().isoformat()}
        for d in decisions
    ]
    return pl.DataFrame(rows, schema=_polars_schema(TRIAGE_DECISION))


def audit_event(
    *,
    case_id: str,
    event: str,
    status: str,
    actor: str,
    reasons: Sequence[str],
    reason_of_record: str,
    due_date: object,
    at: datetime,
) -> dict[str, object]:
    """One audit row; its id is stable, so booking the same event twice writes it once."""
    return {
        "event_id": stable_id([case_id, event, status, at.isoformat()], "audit"),
        "case_id": case_id,
        "event": event,
        "status": status,
        "actor": actor,
        "reasons": list(reasons),
        "reason_of_record": reason_of_record,
        "due_date": due_date,
        "at": at,
        "day": at.date().isoformat(),
    }


def machine_status(decision: TriageDecision) -> str:
    """The status the service gave; a human verdict replaces it only on held cases."""
    return "held_for_review" if decision.status in ("accepted", "rejected") else decision.status


def decision_audit(decisions: Sequence[TriageDecision], actor: str) -> list[dict[str, object]]:
    """The 'decided' event of each decision: the policy codes are its reasons of record."""
    return [
        audit_event(
            case_id=d.case_id,
            event="decided",
            status=machine_status(d),
            actor=actor,
            reasons=d.reasons,
            reason_of_record="; ".join(d.reasons),
            due_date=d.due_date,
            at=d.decided_at,
        )
        for d in decisions
    ]


def audit_frame(events: Sequence[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(list(events), schema=_polars_schema(TRIAGE_AUDIT))
