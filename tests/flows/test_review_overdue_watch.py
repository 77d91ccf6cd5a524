"""The overdue watch over a real inbox and audit trail, under the Prefect harness: its audit
entry, its Prefect event (read back from the server) and the automation that notifies."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import get_client
from prefect.events.clients import AssertingPassthroughEventsClient
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from flows.review_overdue_watch import OVERDUE_EVENT, RESOURCE, review_overdue_watch
from tasks.schemas import InboxItem
from tasks.services.runtime import Runtime
from tasks.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def emitted():
    """Events this process sends to the harness server, recorded on the way (Prefect's own
    passthrough test client): what the watch emitted, read without waiting on the server."""
    AssertingPassthroughEventsClient.reset()
    worker = EventsWorker.instance(AssertingPassthroughEventsClient)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EventsWorker, "instance", lambda *_: worker)
        yield worker
    worker.drain()


def test_an_overdue_item_raises_a_prefect_event_without_case_text(isolated_home, emitted):
    settings = load_settings()
    runtime = Runtime.for_settings(settings)
    today = datetime.now(UTC).astimezone(ZoneInfo(settings.triage.site_timezone)).date()
    late = _item("event-late", -2, today)
    runtime.inbox.add([late, _item("event-soon", 1, today)], now=datetime.now(UTC))

    review_overdue_watch(within_days=2)
    emitted.drain()
    client = AssertingPassthroughEventsClient.last
    assert client is not None
    (event,) = [e for e in client.events if e.event.startswith("pharmalane.review.")]
    assert (event.event, event.resource.id) == (OVERDUE_EVENT, "pharmalane.review-inbox")
    payload = event.payload
    assert payload["overdue_item_ids"] == ["literature:event-late"]
    assert payload["due_item_ids"] == ["literature:event-late", "literature:event-soon"]
    assert (payload["overdue"], payload["due"], payload["within_days"]) == (1, 2, 2)
    assert set(payload) == {"today", "within_days", "due", "overdue", "overdue_item_ids",
                            "due_item_ids"}  # fmt: skip


@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")  # apprise
def test_the_automation_file_applies_with_a_notification_block_and_matches_the_event():
    from prefect.blocks.notifications import SlackWebhook

    SlackWebhook(url=SecretStr("http://127.0.0.1:9/hook")).save("review-alerts", overwrite=True)
    script = REPO / "deploy" / "review_automation.py"
    for _ in range(2):  # a second apply replaces, never duplicates
        done = subprocess.run(
            [sys.executable, str(script), "slack-webhook/review-alerts"],
            cwd=REPO,
            env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name("pharmalane-review-overdue")
        block = client.read_block_document_by_name("review-alerts", "slack-webhook")
    assert str(automation.id) == done.stdout.strip()
    assert automation.trigger.expect == {OVERDUE_EVENT}
    assert (
        automation.trigger.match.model_dump()["prefect.resource.id"]
        == RESOURCE["prefect.resource.id"]
    )
    (action,) = automation.actions
    assert action.block_document_id == block.id
