"""The review inbox: what every lane hands to a human, with its clock, and how it is resolved.

``fill`` runs after the scan, the escalation lane and the triage lane and adds, keyed by item
id (a re-run adds nothing):

* literature items whose decision is ``case_candidate`` (scan or escalation lane) or
  ``human_review`` (escalation lane). Day 0 is when the company first retrieved and flagged the
  record: the time of its first decision (until the intake records a first-seen time). The
  clock is 15 days: a literature case is never a clinical-trial SUSAR (no 7 days), and its
  non-seriousness is not established by a model (no 90 days) until a human says so;
* triage cases held for review, with the triage decision's day 0, clock and due date.

``resolve`` is the one way to resolve an item, whichever path (HTTP API, CLI) calls it: the
first resolution wins (``AlreadyResolved`` for every later one), and each resolution is an
outcome (literature: confirmed_icsr / not_icsr; triage: accepted / rejected) written to the
audit hash chain as codes and hashes, never the reviewer's text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from tasks.errors import AlreadyResolved, DataContractError
from tasks.intake import TriageDecision
from tasks.io.lake import LakeStore
from tasks.io.private_files import write_private
from tasks.schemas import OUTCOMES, InboxItem
from tasks.services import panel
from tasks.services.revisions import withdrawn_ids
from tasks.services.runtime import Runtime, utcnow
from tasks.services.triage_lane import record_review
from tasks.tools.icsr import regulatory_clock

HUMAN_DECISIONS = ("case_candidate", "human_review")
VERDICTS = ("accept", "reject", "changes")  # changes: a draft sent back (drafts only)
NOT_SERIOUSNESS = "none_stated"
NARRATIVE_EXCERPT_CHARS = 1500
VERDICT_FIELDS = ("workflow", "path", "model", "probability", "decision", "reason")


@dataclass(frozen=True)
class Filled:
    literature: int
    triage: int
    open_items: int


def fill(runtime: Runtime, now: datetime) -> Filled:
    """Add every item a human must decide that the inbox does not hold yet.

    With ``panel.enabled``, the persona panel reads each new item first (tasks/services/panel.py).
    """
    inbox = runtime.inbox
    literature = inbox.add(_prevalidated(runtime, literature_items(runtime), now), now=now)
    triage = inbox.add(_prevalidated(runtime, triage_items(runtime), now), now=now)
    return Filled(literature, triage, inbox.count())


def _prevalidated(runtime: Runtime, items: list[InboxItem], now: datetime) -> list[InboxItem]:
    """New items as the persona panel leaves them; an item it closes is added resolved."""
    if not runtime.settings.panel.enabled or not items:
        return items
    known = runtime.inbox.known([i.item_id for i in items])
    run = panel.PanelRun(run_id=f"fill-{now.strftime('%Y%m%dT%H%M%S%f')}", now=now)
    reviewed = panel.prevalidate(runtime, [i for i in items if i.item_id not in known], run)
    panel.book(runtime, run)
    closed = [r.item for r in reviewed if r.close]
    if closed:
        runtime.inbox.add(closed, now=now)
        for item in closed:
            _panel_close(runtime, item, now)
    return [r.item for r in reviewed if not r.close]


def _panel_close(runtime: Runtime, item: InboxItem, at: datetime) -> None:
    """A literature item the validated panel closed: resolved not_icsr by the panel, chained."""
    codes = list((item.evidence.get("panel") or {}).get("reason_codes") or [])
    digest = hashlib.sha256(";".join(codes).encode("utf-8")).hexdigest()
    resolved = runtime.inbox.resolve(
        item.item_id,
        outcome=OUTCOMES[item.kind]["reject"],
        reviewer=panel.REVIEWER,
        reason_sha256=digest,
        at=at,
    )
    entry = {**resolution_entry(resolved), "kind": "panel_resolution", "reason_codes": codes}
    runtime.audit.append([entry], now=at)


def literature_items(runtime: Runtime) -> list[InboxItem]:
    """One item per flagged literature record (case candidate or human review)."""
    lake = runtime.lake
    keys = ["item_id", "content_hash"]
    mine = _about_flagged(lake, "decisions")
    if mine.is_empty():
        return []
    mine = mine.filter(~pl.col("item_id").is_in(withdrawn_ids(runtime).implode()))  # NLM deleted
    if mine.is_empty():
        return []
    mine = mine.sort("decided_at")
    cases = _by_key(_about_flagged(lake, "cases"))
    texts = _by_key(_about_flagged(lake, "escalations"))
    tz = runtime.settings.triage.site_timezone
    items = []
    for (item_id, content_hash), rows in mine.group_by(keys, maintain_order=True):
        key = (str(item_id), str(content_hash))
        items.append(_literature_item(rows, cases.get(key), texts.get(key), tz))
    return items


def _about_flagged(lake: LakeStore, dataset: str) -> pl.DataFrame:
    """The rows of ``dataset`` about a flagged (item, content): DuckDB filters while it reads,
    so memory follows the flagged items, not every decision ever made."""
    if not lake.files(dataset) or not lake.files("decisions"):
        return pl.DataFrame()
    return lake.query(
        f'SELECT x.* FROM "{dataset}" x SEMI JOIN (SELECT DISTINCT item_id, content_hash'  # noqa: S608
        " FROM decisions WHERE decision IN ($1, $2)) f USING (item_id, content_hash)",
        HUMAN_DECISIONS,
    )


def _by_key(frame: pl.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    if frame.is_empty():
        return {}
    return {(r["item_id"], r["content_hash"]): r for r in frame.iter_rows(named=True)}


def _literature_item(
    rows: pl.DataFrame, case: dict[str, Any] | None, text: dict[str, Any] | None, tz: str
) -> InboxItem:
    first, last = rows.row(0, named=True), rows.row(-1, named=True)
    flagged = rows.filter(pl.col("decision").is_in(HUMAN_DECISIONS)).row(-1, named=True)
    criteria = [s for s in (case or {}).get("seriousness") or [] if s != NOT_SERIOUSNESS]
    # day 0: when the company first retrieved the record (older rows: their first decision);
    # not ruled out by a human, the clock assumes seriousness (15 days), never 90
    clock = regulatory_clock(
        first.get("first_seen_at") or first["decided_at"],
        site_timezone=tz,
        criteria=criteria or ["not_ruled_out"],
        study_case=False,
        expected=None,
    )
    evidence = {
        "reference": {
            "item_id": first["item_id"],
            "content_hash": first["content_hash"],
            "pub_date": str(first["pub_date"]),
        },
        "title": (text or {}).get("title"),
        "abstract": (text or {}).get("abstract"),
        "products": list(last["products"] or []),
        "verdicts": [{f: r[f] for f in VERDICT_FIELDS} for r in rows.iter_rows(named=True)],
        "case": _case_evidence(case),
        "reason_codes": [
            f"PLAN_{r['path']}_{r['decision']}".upper() for r in rows.iter_rows(named=True)
        ],
    }
    return InboxItem(
        item_id=f"literature:{first['item_id']}",
        kind="literature",
        source_id=str(first["item_id"]),
        source=str(flagged["workflow"]),
        reason=str(flagged["decision"]),
        day_zero=clock.day_zero,
        clock_days=clock.days,
        due_date=clock.due,
        priority=2 if criteria else 3,
        evidence=evidence,
    )


def _case_evidence(case: dict[str, Any] | None) -> dict[str, Any] | None:
    if case is None:
        return None
    fields = ("suspect_drugs", "reactions", "seriousness", "product_among_suspects", "summary")
    return {f: case[f] for f in fields}


def triage_items(runtime: Runtime) -> list[InboxItem]:
    """One item per triage case held for review, with the triage decision's clock."""
    store = runtime.triage_store
    items = []
    for decision in store.held():
        stored = store.get(decision.case_id)
        case = stored.case.model_dump(mode="json", exclude={"narrative"}) if stored else None
        excerpt = stored.case.narrative[:NARRATIVE_EXCERPT_CHARS] if stored else ""
        items.append(_triage_item(decision, case, excerpt))
    return items


def _triage_item(decision: TriageDecision, case: dict[str, Any] | None, excerpt: str) -> InboxItem:
    evidence = {
        "reference": {"case_id": decision.case_id, "narrative": "triage store (sealed)"},
        "case": case,
        "narrative_excerpt": excerpt,  # what a reviewer judges from (sealed here too)
        "decision": decision.model_dump(
            mode="json",
            include={
                "valid",
                "missing",
                "seriousness",
                "serious",
                "possible_seriousness",
                "severity",
                "narrative_flags",
                "narrative_score",
                "duplicate_of",
                "model",
            },
        ),
        "reason_codes": list(decision.reasons),
    }
    if decision.clock_days <= 7:
        priority = 1
    elif decision.serious:
        priority = 2
    else:
        priority = 3 if decision.clock_days <= 15 else 4
    return InboxItem(
        item_id=f"triage:{decision.case_id}",
        kind="triage",
        source_id=decision.case_id,
        source="urgent-ae-triage",
        reason="held_for_review",
        day_zero=decision.day_zero,
        clock_days=decision.clock_days,
        due_date=decision.due_date,
        priority=priority,
        evidence=evidence,
    )


def open_items(runtime: Runtime) -> list[InboxItem]:
    """Open items, earliest due first; triage cases held since the last fill included."""
    inbox = runtime.inbox
    inbox.add(triage_items(runtime), now=utcnow())
    return inbox.items()


@dataclass(frozen=True)
class DueWatch:
    """Open items due within the watch's horizon; ``overdue`` already past their due date."""

    today: date
    within_days: int
    due: list[InboxItem]

    @property
    def overdue(self) -> list[InboxItem]:
        return [i for i in self.due if i.due_date < self.today]


def watch_due(runtime: Runtime, *, within_days: int, now: datetime) -> DueWatch:
    """Open items due within ``within_days`` of today (site time zone), chained as one alert.

    The audit entry (ids, counts, horizon) is keyed by day and horizon, so a watch re-run the
    same day adds nothing; nothing becomes overdue without an entry naming it.
    """
    today = now.astimezone(ZoneInfo(runtime.settings.triage.site_timezone)).date()
    horizon = today + timedelta(days=within_days)
    due = [i for i in open_items(runtime) if i.due_date <= horizon]
    watch = DueWatch(today, within_days, due)
    if due:
        entry = {
            "key": f"review-due:{today.isoformat()}:{within_days}",
            "kind": "review_due_alert",
            "workflow": "review-overdue-watch",
            "within_days": within_days,
            "due_items": len(due),
            "overdue_items": len(watch.overdue),
            "item_ids": [i.item_id for i in due],
            "reason_codes": ["REVIEW_OVERDUE" if watch.overdue else "REVIEW_DUE_SOON"],
            "at": now.isoformat(),
        }
        runtime.audit.append([entry], now=now)
    return watch


def find(runtime: Runtime, ref: str) -> InboxItem:
    """The item ``ref`` names (its id, or its source id); held triage cases are picked up.

    Raises:
        DataContractError: no such item (field ``item_id``).
    """
    inbox = runtime.inbox
    item = inbox.find(ref)
    if item is None:  # a case held since the last fill: take it in now
        inbox.add(triage_items(runtime), now=utcnow())
        item = inbox.find(ref)
    if item is None:
        raise DataContractError(f"no inbox item {ref}", record=ref, field="item_id")
    return item


def resolve(
    runtime: Runtime, ref: str, *, verdict: str, reviewer: str, reason: str, at: datetime
) -> InboxItem:
    """Resolve an item as ``reviewer``; the first resolution wins, on every path.

    Raises:
        DataContractError: unknown item, a verdict other than accept|reject (and changes, for
            a draft), or a reason of record with fewer than 3 characters that are not spaces.
        AlreadyResolved: resolved before (here, or a triage case through its Prefect review).
    """
    if verdict not in VERDICTS:
        raise DataContractError(f"verdict {verdict!r} is not {'|'.join(VERDICTS)}", field="verdict")
    if len("".join(reason.split())) < 3 or not reviewer.strip():
        raise DataContractError(
            "a resolution needs a reviewer and a reason of record (3 characters or more)",
            field="reason",
        )
    item = find(runtime, ref)
    if verdict not in OUTCOMES[item.kind]:
        raise DataContractError(
            f"a {item.kind} item is resolved {'|'.join(OUTCOMES[item.kind])}, not {verdict}",
            record=item.item_id,
            field="verdict",
        )
    if item.status != "open":
        raise AlreadyResolved(
            f"already resolved ({item.outcome} by {item.reviewer})",
            record=item.item_id,
            field="status",
        )
    outcome = OUTCOMES[item.kind][verdict]
    if item.kind == "triage":
        _review_triage_case(runtime, item, outcome, reviewer, reason, at)
    digest = hashlib.sha256(reason.encode("utf-8")).hexdigest()
    resolved = runtime.inbox.resolve(
        item.item_id, outcome=outcome, reviewer=reviewer, reason_sha256=digest, at=at
    )
    runtime.audit.append([resolution_entry(resolved)], now=at)
    return resolved


def _review_triage_case(
    runtime: Runtime, item: InboxItem, outcome: str, reviewer: str, reason: str, at: datetime
) -> None:
    """The triage store's own review first: it refuses a case reviewed on another path."""
    try:
        record_review(
            runtime, item.source_id, verdict=outcome, reviewer=reviewer, reason=reason, at=at
        )
    except DataContractError as exc:
        if exc.field == "status":
            raise AlreadyResolved(str(exc), record=item.item_id, field="status") from exc
        raise


def resolution_entry(item: InboxItem) -> dict[str, Any]:
    """The chain entry of a resolution: codes, dates and the reason's sha256, no text."""
    return {
        "key": f"resolution:{item.item_id}",
        "kind": "human_resolution",
        "workflow": "review-inbox",
        "item_id": item.item_id,
        "item_kind": item.kind,
        "source": item.source,
        "outcome": item.outcome,
        "actor": item.reviewer,
        "reason_codes": [f"HUMAN_{(item.outcome or '').upper()}"],
        "reason_sha256": item.reason_sha256,
        "day_zero": item.day_zero.isoformat(),
        "due_date": item.due_date.isoformat(),
        "at": item.resolved_at.isoformat() if item.resolved_at else None,
    }


HANDOFF_FIELDS = (
    "item_id",
    "literature_reference",
    "title",
    "pub_date",
    "content_hash",
    "reporter",
    "patient",
    "suspect_drugs",
    "reactions",
    "seriousness",
    "products",
    "day_zero",
    "due_date",
    "outcome",
    "reviewer",
    "resolved_at",
)


def confirmed_cases(runtime: Runtime) -> list[dict[str, Any]]:
    """Literature items a reviewer confirmed as ICSRs, with the minimum ICSR fields.

    Reporter and patient of a literature case are those the article describes: the reference
    stands for the reporter, and the patient is not extracted yet (None), for the case
    processor to complete in the safety database.
    """
    rows = []
    for item in runtime.inbox.items(status="resolved"):
        if item.outcome != "confirmed_icsr":
            continue
        evidence, case = item.evidence, item.evidence.get("case") or {}
        reference = evidence.get("reference", {})
        rows.append(
            {
                "item_id": item.item_id,
                "literature_reference": f"PMID:{item.source_id}",
                "title": evidence.get("title"),
                "pub_date": reference.get("pub_date"),
                "content_hash": reference.get("content_hash"),
                "reporter": f"authors of PMID:{item.source_id}",
                "patient": None,
                "suspect_drugs": list(case.get("suspect_drugs") or []),
                "reactions": list(case.get("reactions") or []),
                "seriousness": list(case.get("seriousness") or []),
                "products": list(evidence.get("products") or []),
                "day_zero": item.day_zero.isoformat(),
                "due_date": item.due_date.isoformat(),
                "outcome": item.outcome,
                "reviewer": item.reviewer,
                "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
            }
        )
    return rows


def export_confirmed(runtime: Runtime, folder: Path) -> tuple[Path, Path, int]:
    """``confirmed-cases.json`` and ``.csv`` in ``folder`` (0600): the handoff to the safety
    database. Returns both paths and the number of cases."""
    rows = confirmed_cases(runtime)
    as_json = json.dumps(rows, indent=2, ensure_ascii=False).encode("utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HANDOFF_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "; ".join(v) if isinstance(v, list) else v for k, v in row.items()})
    json_path = write_private(folder / "confirmed-cases.json", as_json)
    csv_path = write_private(folder / "confirmed-cases.csv", buffer.getvalue().encode("utf-8"))
    return json_path, csv_path, len(rows)
