"""Waiting on flow runs of the browser tests' Prefect server (polled, each wait bounded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import ObjectNotFound


def wait_for_state(run_id: UUID, wanted: Callable[[State], bool], within_s: float = 120.0) -> State:
    """The run's state once ``wanted`` holds (polled); fails with the last state seen."""
    deadline = time.monotonic() + within_s
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state is not None and wanted(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} never reached the wanted state: {state}")
            time.sleep(0.5)


def suspended(state: State) -> bool:
    """Suspended (a paused state whose run left its worker), waiting for its form."""
    return state.is_paused() and state.name == "Suspended"


def wait_for_deployment(name: str, within_s: float = 120.0) -> UUID:
    """The id of deployment ``flow/deployment`` once a runner has registered it."""
    deadline = time.monotonic() + within_s
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_deployment_by_name(name).id
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
