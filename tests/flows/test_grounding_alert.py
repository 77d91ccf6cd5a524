"""weekly-finops publishes the grounded-answer rate and alerts (log + Prefect event) on a day
below knowledge.grounding.min_rate, under the real Prefect harness."""

from __future__ import annotations

from datetime import date

import polars as pl
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.events.clients import AssertingPassthroughEventsClient

from flows.weekly_finops import GROUNDING_LOW_EVENT, weekly_finops
from tasks.core.answer_quality import answer_row
from tasks.io.lake import Lake
from tasks.schemas import ANSWER_GROUNDING, DECISION, LEDGER
from tasks.settings import load_settings
from tests.flows.test_review_overdue_watch import emitted  # noqa: F401 (fixture)
from tests.io.test_finops import T0, _decisions, _ledger


def test_a_day_below_the_grounded_rate_is_an_artifact_a_warning_and_an_event(
    isolated_home,
    emitted,  # noqa: F811
    caplog,
):
    lake = Lake(load_settings().lake_dir)
    lake.write("ledger", _ledger(), LEDGER, partition_by="day", stem="t")
    lake.write("decisions", _decisions(), DECISION, partition_by="pub_month", stem="t")
    rows = [
        answer_row(
            event_id=f"a{n}",
            served_by="miss",
            composer="model:local-qwen",
            grounded_share=share,
            refusal=False,
            query_class="default",
            now=T0,
        )
        for n, share in enumerate([1.0, 0.5])
    ]
    frame = pl.DataFrame(rows, schema_overrides={"grounded_share": pl.Float64})
    lake.append_new(
        "answer_grounding", frame, ANSWER_GROUNDING, keys=["event_id"], partition_by="day", stem="t"
    )
    state = weekly_finops(until=date(2026, 11, 22), days=7, return_state=True)
    assert state.is_completed()
    assert "ALERT grounded-answer rate 0.500 on 2026-11-16 (1 of 2 answers grounded)" in caplog.text
    emitted.drain()
    client = AssertingPassthroughEventsClient.last
    assert client is not None
    (event,) = [e for e in client.events if e.event == GROUNDING_LOW_EVENT]
    assert event.payload["days"] == [
        {"day": "2026-11-16", "answers": "2", "grounded": "1", "rate": "0.5"}
    ]
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["finops-grounded-answers"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert "model:local-qwen" in str(artifact.data) and "composed" in str(artifact.data)
