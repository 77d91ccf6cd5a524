"""The supervisor around a model call: throttle, reserve, (call), settle; policy on exhaustion.

    ticket = admit(settings, workflow, estimate_usd, urgent=False, now=now)
    if ticket.admission.runs:
        throttle(settings, workflow)
        ... the model call ...
        settle(settings, ticket, actual_usd, now=later)

Spend goes past a budget only through an urgent-safety override (a reservation of kind
``override``, alerted) or an actual above its estimate (an ``overage`` row, alerted); see
``tasks/io/budget.py`` for the invariant.

Throttles use a Prefect global concurrency limit (``rate_limit``, slots decaying at
calls_per_minute / 60 per second) when a Prefect API is configured, and the same token bucket
in the budget SQLite file when running embedded.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from prefect import get_client, get_run_logger
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_logger
from prefect.settings import get_current_settings

from tasks.errors import BudgetExceeded
from tasks.io.budget import Reservation, Settlement
from tasks.policy.supervisor import Admission, on_exhausted
from tasks.rules import Budget, PolicyRule, load_budgets, load_policies
from tasks.settings import Settings
from tasks.steps import resources


@dataclass(frozen=True)
class Ticket:
    """The admission of one call and its hold (kind ``grant`` or ``override``), if any."""

    admission: Admission
    reservation: Reservation | None


def admit(
    settings: Settings, workflow: str, estimate_usd: float, *, urgent: bool | None, now: datetime
) -> Ticket:
    """Reserve ``estimate_usd`` of the workflow's budget, or let the policy say what happens."""
    budget = load_budgets(settings).budget(workflow)
    if budget is None:
        return Ticket(Admission("run", (), alert=False), None)
    return admit_within(
        settings, budget, load_policies(settings).rules, estimate_usd, urgent=urgent, now=now
    )


def admit_within(
    settings: Settings,
    budget: Budget,
    rules: Sequence[PolicyRule],
    estimate_usd: float,
    *,
    urgent: bool | None,
    now: datetime,
) -> Ticket:
    """``admit`` with the budget and policy already loaded (the triage hot path).

    The policy's answer for a spent budget is known before the reservation, so the store can
    decide grant or override in one transaction. An override is booked as a reservation of
    kind ``override`` (its estimate held, its actual settled like any other) and alerted; a
    refusal is alerted too. Nothing goes over budget unbooked.
    """
    if_spent = on_exhausted(budget, rules, urgent=urgent)
    codes = [r.code for r in if_spent.reasons] if if_spent.runs else []
    try:
        reservation = resources.budgets(settings).reserve(budget, estimate_usd, now, override=codes)
    except BudgetExceeded:
        _alert(settings, budget.workflow, estimate_usd, if_spent, now)
        return Ticket(if_spent, None)
    if reservation.kind == "override":
        _alert(settings, budget.workflow, estimate_usd, if_spent, now, reservation=reservation.id)
        return Ticket(if_spent, reservation)
    return Ticket(Admission("run", (), alert=False), reservation)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("pharmalane.supervisor")


def _alert(
    settings: Settings,
    workflow: str,
    estimate_usd: float,
    admission: Admission,
    now: datetime,
    *,
    reservation: str = "",
) -> None:
    """A spent budget is an alert (WARNING log) and a reason of record in the audit trail."""
    codes = [r.code for r in admission.reasons]
    resources.audit(settings).append(
        [
            {
                "kind": "budget_exhausted",
                "workflow": workflow,
                "action": admission.action,
                "reason_codes": codes,
                "estimate_usd": estimate_usd,
                "reservation": reservation,
            }
        ],
        now=now,
    )
    _logger().warning(
        "ALERT budget exhausted: %s -> %s (%s), estimate $%.6f %s",
        workflow,
        admission.action,
        ",".join(codes),
        estimate_usd,
        reservation,
    )


def _alert_overage(
    settings: Settings, reservation: Reservation, settled: Settlement, now: datetime
) -> None:
    """An actual above its estimate broke the estimate's promise: alert, the period is shut."""
    resources.audit(settings).append(
        [
            {
                "kind": "budget_overage",
                "workflow": reservation.workflow,
                "reservation": reservation.id,
                "estimate_usd": reservation.estimate_usd,
                "overage_usd": settled.overage_usd,
            }
        ],
        now=now,
    )
    _logger().warning(
        "ALERT budget overage: %s call %s cost $%.6f above its estimate of $%.6f; no more "
        "grants this period: fix the estimate",
        reservation.workflow,
        reservation.id,
        settled.overage_usd,
        reservation.estimate_usd,
    )


def settle(settings: Settings, ticket: Ticket, actual_usd: float, *, now: datetime) -> None:
    """Book what the call cost; an actual above the estimate is booked as an alerted overage."""
    if ticket.reservation is None:
        return
    settled = resources.budgets(settings).settle(ticket.reservation, actual_usd, now)
    if settled.overage_usd > 0:
        _alert_overage(settings, ticket.reservation, settled, now)


def prefect_server_configured() -> bool:
    return bool(get_current_settings().api.url)


def limit_name(workflow: str) -> str:
    return f"model-calls-{workflow}"


@functools.cache
def ensure_prefect_rate_limit(workflow: str, calls_per_minute: int) -> str:
    """Create (or update) the global concurrency limit that throttles ``workflow``."""
    name = limit_name(workflow)
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


def throttle(
    settings: Settings,
    workflow: str,
    *,
    timeout_seconds: float = 60.0,
    backend: Literal["auto", "prefect", "embedded"] = "auto",
) -> None:
    """Wait for one call slot of ``workflow``.

    ``backend="auto"`` uses Prefect's global concurrency limits when an API is configured and
    the embedded token bucket otherwise.

    Raises:
        TimeoutError: no slot within ``timeout_seconds`` (the caller defers the work).
    """
    rule = load_budgets(settings).throttle(workflow)
    if rule is None:
        return
    if backend == "prefect" or (backend == "auto" and prefect_server_configured()):
        name = ensure_prefect_rate_limit(workflow, rule.calls_per_minute)
        rate_limit(name, occupy=1, timeout_seconds=timeout_seconds, strict=True)
        return
    store, deadline = resources.budgets(settings), time.monotonic() + timeout_seconds
    while (wait := store.take_token(workflow, rule.calls_per_minute, datetime.now(UTC))) > 0:
        if time.monotonic() + wait > deadline:
            raise TimeoutError(f"{workflow}: no model-call slot within {timeout_seconds}s")
        time.sleep(wait)
