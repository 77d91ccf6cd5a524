"""Flow `review-overdue-watch`: every open review item due within N days, so none goes late
silently: an audit entry naming them, a warning per overdue item, a table artifact, and a
Prefect event (``pharmalane.review.overdue``, or ``pharmalane.review.due-soon`` when none is
late yet) that the automation in deploy/automations/review-overdue.yaml turns into a
notification. Events carry item ids and counts, never case text."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import Event, emit_event
from pydantic import BaseModel, Field

from tasks.services.inbox import DueWatch
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.inbox import watch_due

OVERDUE_EVENT = "pharmalane.review.overdue"
DUE_SOON_EVENT = "pharmalane.review.due-soon"
RESOURCE = {
    "prefect.resource.id": "pharmalane.review-inbox",
    "prefect.resource.name": "review inbox",
}


class DueSummary(BaseModel):
    within_days: int
    due: int
    overdue: int
    item_ids: list[str]


def _alert(watch: DueWatch) -> Event | None:
    """The Prefect event of this watch, when anything is due: ids and counts only."""
    if not watch.due:
        return None
    overdue = sorted(i.item_id for i in watch.overdue)
    return emit_event(
        event=OVERDUE_EVENT if overdue else DUE_SOON_EVENT,
        resource=RESOURCE,
        payload={
            "today": watch.today.isoformat(),
            "within_days": watch.within_days,
            "due": len(watch.due),
            "overdue": len(overdue),
            "overdue_item_ids": overdue,
            "due_item_ids": sorted(i.item_id for i in watch.due),
        },
    )


@flow(name="review-overdue-watch", log_prints=False)
def review_overdue_watch(
    within_days: Annotated[int, Field(ge=0, le=90)] = 2,
) -> DueSummary:
    """List open review items due within `within_days` days (overdue ones first).

    Args:
        within_days: horizon in calendar days from today (site time zone); 0: due today or late
    """
    settings = load_settings()
    watch = watch_due(settings, within_days, utcnow())
    rows = [
        {
            "item": i.item_id,
            "reason": i.reason,
            "due_date": str(i.due_date),
            "days_left": str((i.due_date - watch.today).days),
            "priority": str(i.priority),
        }
        for i in sorted(watch.due, key=lambda i: (i.due_date, i.priority, i.item_id))
    ]
    create_table_artifact(
        key="review-overdue-watch",
        table=rows
        or [{"item": "none", "reason": "", "due_date": "", "days_left": "", "priority": ""}],
        description=f"Open review items due within {within_days} days of {watch.today}",
    )
    get_run_logger().info(
        "review watch: %d due within %d days, %d overdue",
        len(watch.due),
        within_days,
        len(watch.overdue),
    )
    _alert(watch)
    return DueSummary(
        within_days=within_days,
        due=len(watch.due),
        overdue=len(watch.overdue),
        item_ids=[r["item"] for r in rows],
    )
