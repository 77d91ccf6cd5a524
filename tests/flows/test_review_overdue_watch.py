"""The overdue watch over a real inbox and audit trail, under the Prefect harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flows.review_overdue_watch import review_overdue_watch
from tasks.schemas import InboxItem
from tasks.services.runtime import Runtime
from tasks.settings import load_settings


def _item(source_id: str, due_in_days: int, today) -> InboxItem:
    return InboxItem(
        item_id=f"literature:{source_id}",
        kind="literature",
        source_id=source_id,
        source="escalation-lane",
        reason="human_review",
        day_zero=today - timedelta(days=15 - due_in_days),
        clock_days=15,
        due_date=today + timedelta(days=due_in_days),
        priority=3,
        evidence={"reference": {"item_id": source_id}},
    )


def test_items_due_soon_or_late_are_listed_chained_and_alerted(isolated_home, caplog):
    settings = load_settings()
    runtime = Runtime.for_settings(settings)
    today = datetime.now(UTC).astimezone(ZoneInfo(settings.triage.site_timezone)).date()
    items = [_item("late", -1, today), _item("today", 0, today), _item("soon", 2, today)]
    runtime.inbox.add([*items, _item("later", 9, today)], now=datetime.now(UTC))
    runtime.inbox.resolve(
        "literature:soon",
        outcome="not_icsr",
        reviewer="dr-x",
        reason_sha256="h",
        at=datetime.now(UTC),
    )

    summary = review_overdue_watch(within_days=3)
    assert (summary.due, summary.overdue) == (2, 1)
    assert summary.item_ids == ["literature:late", "literature:today"]
    (alert,) = [e for e in runtime.audit.entries() if e["kind"] == "review_due_alert"]
    assert (alert["item_ids"], alert["overdue_items"]) == (summary.item_ids, 1)
    assert "ALERT review overdue: literature:late" in caplog.text

    review_overdue_watch(within_days=3)  # the same day again: no second entry
    assert [e["kind"] for e in runtime.audit.entries()].count("review_due_alert") == 1
    assert review_overdue_watch(within_days=0).item_ids == ["literature:late", "literature:today"]
