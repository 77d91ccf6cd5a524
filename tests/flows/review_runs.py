"""Helpers for tests that drive `review-inbox` runs on the Prefect test harness.

The run is created from its deployment like a lane creates it (``run_deployment``), and the
test acts as the worker: it executes the run with Prefect's own flow engine, in this process,
until the run suspends (``Pause``) or finishes. A resume goes through the Prefect API with the
form's input (``resume_flow_run(run_input=...)``), as the UI's Resume button sends it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound, Pause
from prefect.flow_engine import run_flow
from prefect.flow_runs import resume_flow_run
from prefect.input.run_input import keyset_from_paused_state

from flows.review_inbox import review_inbox


def deploy_review() -> str:
    """The `review-inbox/review` deployment on the harness (its entrypoint, no work pool)."""
    review_inbox.to_deployment(name="review").apply()
    return "review-inbox/review"


def forget_review() -> None:
    """Delete the deployment and every `review-inbox` run: the harness outlives the test."""
    with get_client(sync_client=True) as client:
        for run_id in review_runs():
            client.delete_flow_run(run_id)
        with contextlib.suppress(ObjectNotFound):
            deployment = client.read_deployment_by_name("review-inbox/review")
            client.delete_deployment(deployment.id)


def review_runs() -> list[UUID]:
    """Every `review-inbox` flow run on the server."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["review-inbox"]))
        )
    return [r.id for r in runs]


def read_run(run_id: UUID | str) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id)))


def work(run_id: UUID | str) -> str:
    """Execute the run as a worker would, once: 'suspended' or its final state's type."""
    with contextlib.suppress(Pause):  # suspended: the run left its worker
        run_flow(review_inbox, flow_run=read_run(run_id))
    state = read_run(run_id).state
    assert state is not None
    return "suspended" if state.is_paused() else state.type.value.lower()


def form_of(run_id: UUID | str) -> dict[str, Any]:
    """The suspended run's form: its pause key, description and JSON schema."""
    run = read_run(run_id)
    assert run.state is not None and run.state.is_paused(), run.state
    keyset = keyset_from_paused_state(run.state)
    with get_client(sync_client=True) as client:
        description = client.read_flow_run_input(run.id, keyset["description"])
        schema = client.read_flow_run_input(run.id, keyset["schema"])
    return {
        "key": run.state.state_details.pause_key,
        "description": json.loads(description),
        "schema": json.loads(schema),
    }


def answer(run_id: UUID | str, **form: str) -> str:
    """Resume the suspended run with ``form`` through the API, then work it: its new state."""
    resume_flow_run(UUID(str(run_id)), run_input=form)
    return work(run_id)
