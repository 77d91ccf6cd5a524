"""The Prefect API as an adapter for code below the steps: global limits and the run logger.

Services are plain Python; where they need the orchestrator (a global concurrency limit that
throttles model calls across workers, the logger of the current run), they reach it here, so
only this adapter, ``flows/`` and ``tasks/steps/`` import prefect.
"""

from __future__ import annotations

import functools
import logging
from contextlib import suppress
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import rate_limit
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger
from prefect.settings import get_current_settings


def run_logger(fallback: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current Prefect run's logger, or the named logger outside a run (CLI, services)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger(fallback)


def server_configured() -> bool:
    """Whether a Prefect API is configured (global limits live there, not in-process)."""
    return bool(get_current_settings().api.url)


@functools.cache
def ensure_rate_limit(name: str, calls_per_minute: int) -> str:
    """Create (or update) the global concurrency limit ``name`` as a token bucket."""
    decay = calls_per_minute / 60.0
    with get_client(sync_client=True) as client:
        try:
            current = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            current = None
        if current is None or (current.limit, current.slot_decay_per_second) != (
            calls_per_minute,
            decay,
        ):
            if current is not None:
                client.delete_global_concurrency_limit_by_name(name)
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=calls_per_minute, slot_decay_per_second=decay
                )
            )
    return name


def take_rate_slot(name: str, timeout_seconds: float) -> None:
    """One slot of the rate limit ``name``; TimeoutError when none frees in time."""
    rate_limit(name, occupy=1, timeout_seconds=timeout_seconds, strict=True)


def ensure_global_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` unless the Prefect server has it."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another process created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )


def automation_with_block(path: Path, block_id: UUID) -> AutomationCore:
    """The automation in the YAML file ``path``, its notification actions sent via ``block_id``."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    for action in data["actions"]:
        if action["type"] == "send-notification":
            action["block_document_id"] = str(block_id)
    return AutomationCore.model_validate(data)


def apply_automation(path: Path, block: str) -> UUID:
    """Create the automation in ``path`` with the notification block ``TYPE/NAME``; an
    automation of the same name is replaced, so applying twice leaves one."""
    block_type, _, name = block.partition("/")
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name, block_type)
        wanted = automation_with_block(path, document.id)
        for existing in client.read_automations_by_name(wanted.name):
            client.delete_automation(existing.id)
        return client.create_automation(wanted)
