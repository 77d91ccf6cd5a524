"""Flow `review-overdue-watch`: every open review item due within N days, so none goes late
silently: an audit entry naming them, a warning per overdue item, a table artifact."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.inbox import watch_due


class DueSummary(BaseModel):
    within_days: int
    due: int
    overdue: int
    item_ids: list[str]


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
    return DueSummary(
        within_days=within_days,
        due=len(watch.due),
        overdue=len(watch.overdue),
        item_ids=[r["item"] for r in rows],
    )
