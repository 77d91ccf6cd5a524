"""The Supervisor around a model call: admit (reserve), throttle, settle; the supervised LLM.

    ticket = admit(runtime, workflow, estimate_usd, urgent=False, now=now)
    if ticket.admission.runs:
        throttle(runtime, workflow)
        ... the model call ...
        settle(runtime, ticket, actual_usd, now=later)

Spend goes past a budget only through an urgent-safety override (a reservation of kind
``override``, alerted) or an actual above its estimate (an ``overage`` row, alerted); see
``tasks/io/budget.py`` for the invariant and ``tasks/policy/supervisor.py`` for the decision.

Throttles use a Prefect global concurrency limit (slots decaying at calls_per_minute / 60 per
second) when a Prefect API is configured, and the same token bucket in the budget SQLite file
when running embedded.

``SupervisedLLM`` wraps the served model (it is itself an ``LLM``), so the lane and the ladder
evaluation ask through it exactly as they would ask the model:

1. a question already answered (same model, messages, schema, max_tokens) is replayed from the
   paid-call journal: no call, no cost, no reservation: a resumed run never pays twice;
2. otherwise the supervisor reserves the worst case, a true upper bound: every token the call
   may use (one per UTF-8 byte of the prompt and schema, plus template overhead, and
   ``max_tokens`` out) at the price of the most expensive model it may end on, against the
   workflow's budget; a refusal raises ``BudgetDeferred``, an ``LLMUnavailable``, so the item
   stays pending for the next window, and an alert goes to the audit trail;
3. it waits for a throttle slot, calls, commits the answer to the journal, then settles the
   reservation at the cost of the tokens actually used, priced at the model that answered. A
   call that failed may still have been billed: it settles at its estimate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from models.llm import LLM, ChatMessage, ChatResult, LLMUnavailable
from tasks.core.pricing import call_cost
from tasks.errors import BudgetExceeded, ConfigError
from tasks.io import orchestrator
from tasks.io.budget import Reservation, Settlement
from tasks.io.call_journal import call_key
from tasks.policy.supervisor import Admission, on_exhausted
from tasks.rules import Budget, ModelPrice, PolicyRule
from tasks.services.runtime import Runtime

MESSAGE_OVERHEAD_TOKENS = 16  # chat-template tokens around each message (role, separators)
PROMPT_OVERHEAD_TOKENS = 128  # template head (a default system prompt) and the assistant turn


@dataclass(frozen=True)
class Ticket:
    """The admission of one call and its hold (kind ``grant`` or ``override``), if any."""

    admission: Admission
    reservation: Reservation | None


def admit(
    runtime: Runtime, workflow: str, estimate_usd: float, *, urgent: bool | None, now: datetime
) -> Ticket:
    """Reserve ``estimate_usd`` of the workflow's budget, or let the policy say what happens."""
    budget = runtime.rules.budgets.budget(workflow)
    if budget is None:
        return Ticket(Admission("run", (), alert=False), None)
    rules = runtime.rules.policies.rules
    return admit_within(runtime, budget, rules, estimate_usd, urgent=urgent, now=now)


def admit_within(
    runtime: Runtime,
    budget: Budget,
    rules: Sequence[PolicyRule],
    estimate_usd: float,
    *,
    urgent: bool | None,
    now: datetime,
) -> Ticket:
    """``admit`` with the budget and policy already chosen (the triage hot path).

    The policy's answer for a spent budget is known before the reservation, so the store can
    decide grant or override in one transaction. An override is booked as a reservation of
    kind ``override`` (its estimate held, its actual settled like any other) and alerted; a
    refusal is alerted too. Nothing goes over budget unbooked.
    """
    if_spent = on_exhausted(budget, rules, urgent=urgent)
    codes = [r.code for r in if_spent.reasons] if if_spent.runs else []
    try:
        reservation = runtime.budgets.reserve(budget, estimate_usd, now, override=codes)
    except BudgetExceeded:
        _alert(runtime, budget.workflow, estimate_usd, if_spent, now)
        return Ticket(if_spent, None)
    if reservation.kind == "override":
        _alert(runtime, budget.workflow, estimate_usd, if_spent, now, reservation=reservation.id)
        return Ticket(if_spent, reservation)
    return Ticket(Admission("run", (), alert=False), reservation)


def _alert(
    runtime: Runtime,
    workflow: str,
    estimate_usd: float,
    admission: Admission,
    now: datetime,
    *,
    reservation: str = "",
) -> None:
    """A spent budget is an alert (WARNING log) and a reason of record in the audit trail."""
    codes = [r.code for r in admission.reasons]
    entry = {
        "kind": "budget_exhausted",
        "workflow": workflow,
        "action": admission.action,
        "reason_codes": codes,
        "estimate_usd": estimate_usd,
        "reservation": reservation,
    }
    runtime.audit.append([entry], now=now)
    orchestrator.run_logger("pharmalane.supervisor").warning(
        "ALERT budget exhausted: %s -> %s (%s), estimate $%.6f %s",
        workflow,
        admission.action,
        ",".join(codes),
        estimate_usd,
        reservation,
    )


def _alert_overage(
    runtime: Runtime, reservation: Reservation, settled: Settlement, now: datetime
) -> None:
    """An actual above its estimate broke the estimate's promise: alert, the period is shut."""
    entry = {
        "kind": "budget_overage",
        "workflow": reservation.workflow,
        "reservation": reservation.id,
        "estimate_usd": reservation.estimate_usd,
        "overage_usd": settled.overage_usd,
    }
    runtime.audit.append([entry], now=now)
    orchestrator.run_logger("pharmalane.supervisor").warning(
        "ALERT budget overage: %s call %s cost $%.6f above its estimate of $%.6f; no more "
        "grants this period: fix the estimate",
        reservation.workflow,
        reservation.id,
        settled.overage_usd,
        reservation.estimate_usd,
    )


def settle(runtime: Runtime, ticket: Ticket, actual_usd: float, *, now: datetime) -> None:
    """Book what the call cost; an actual above the estimate is booked as an alerted overage."""
    if ticket.reservation is None:
        return
    settled = runtime.budgets.settle(ticket.reservation, actual_usd, now)
    if settled.overage_usd > 0:
        _alert_overage(runtime, ticket.reservation, settled, now)


def limit_name(workflow: str) -> str:
    """The Prefect global concurrency limit that throttles ``workflow``'s model calls."""
    return f"model-calls-{workflow}"


def throttle(
    runtime: Runtime,
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
    rule = runtime.rules.budgets.throttle(workflow)
    if rule is None:
        return
    if backend == "prefect" or (backend == "auto" and orchestrator.server_configured()):
        name = orchestrator.ensure_rate_limit(limit_name(workflow), rule.calls_per_minute)
        orchestrator.take_rate_slot(name, timeout_seconds)
        return
    store, deadline = runtime.budgets, time.monotonic() + timeout_seconds
    while (wait := store.take_token(workflow, rule.calls_per_minute, datetime.now(UTC))) > 0:
        if time.monotonic() + wait > deadline:
            raise TimeoutError(f"{workflow}: no model-call slot within {timeout_seconds}s")
        time.sleep(wait)


# --- the supervised large model ---------------------------------------------------------------


class BudgetDeferred(LLMUnavailable):
    """The workflow's budget is spent: the call was not made, the item waits."""


def input_token_bound(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any] | None = None
) -> int:
    """The most prompt tokens any tokenizer can make of ``messages`` (and a schema it is sent).

    Byte-level BPE emits at most one token per UTF-8 byte and WordPiece at most one per
    character, so the byte count bounds every tokenizer here; a characters-per-token guess does
    not (non-English text, emoji and digits run well under 3 characters per token).
    """
    body = sum(len(str(m.get("content") or "").encode("utf-8")) for m in messages)
    schema_bytes = len(json.dumps(schema).encode("utf-8")) if schema else 0
    return body + schema_bytes + MESSAGE_OVERHEAD_TOKENS * len(messages) + PROMPT_OVERHEAD_TOKENS


def estimate_usd(
    prices: Sequence[ModelPrice],
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int,
    schema: Mapping[str, Any] | None = None,
) -> float:
    """The most this call can cost: every token it may use, on the dearest model it may end on."""
    tokens = input_token_bound(messages, schema)
    return max(call_cost(p, input_tokens=tokens, output_tokens=max_tokens) for p in prices)


def chain_names(llm: LLM) -> tuple[str, ...]:
    """The model keys a call through ``llm`` may end on: a fallback chain's every backend."""
    backends = getattr(llm, "backends", None)
    if not backends:
        return (llm.name,)
    return tuple(name for backend in backends for name in chain_names(backend))


class SupervisedLLM:
    """``inner`` behind the journal, the workflow's budget and its throttle."""

    def __init__(
        self,
        inner: LLM,
        runtime: Runtime,
        *,
        workflow: str,
        urgent: bool | None = False,
        prices: Mapping[str, ModelPrice] | None = None,
        throttle_timeout_s: float = 60.0,
    ):
        self.inner = inner
        self.throttle_timeout_s = throttle_timeout_s
        self.runtime = runtime
        self.workflow = workflow
        self.urgent = urgent
        self.replayed = 0
        self.called = 0
        self.prices = prices if prices is not None else runtime.rules.models.models
        self.may_serve = chain_names(inner)
        unpriced = [m for m in self.may_serve if m not in self.prices]
        if unpriced:
            raise ConfigError(f"models {unpriced} have no price in models.yaml: add them")

    @property
    def name(self) -> str:
        return self.inner.name

    def for_item(self, *, urgent: bool | None) -> SupervisedLLM:
        """The same wrapper for an item of another urgency (counters are not shared)."""
        return SupervisedLLM(
            self.inner, self.runtime, workflow=self.workflow, urgent=urgent, prices=self.prices
        )

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatResult:
        store = self.runtime.journal
        key = call_key(self.inner.name, messages, schema, max_tokens)
        kept = store.get(key)
        if kept is not None:
            self.replayed += 1
            return kept
        prices = [self.prices[m] for m in self.may_serve]
        estimate = estimate_usd(prices, messages, max_tokens, schema)
        ticket = self._admitted(estimate)
        try:
            result = self.inner.chat(messages, schema=schema, max_tokens=max_tokens)
        except Exception:
            settle(self.runtime, ticket, estimate, now=datetime.now(UTC))  # may have been billed
            raise
        store.put(key, result, datetime.now(UTC))
        self.called += 1
        settle(self.runtime, ticket, self._actual(result, estimate), now=datetime.now(UTC))
        return result

    def _admitted(self, estimate: float) -> Ticket:
        """A reservation and a throttle slot for one call, or ``LLMUnavailable`` (none sent)."""
        now = datetime.now(UTC)
        ticket = admit(self.runtime, self.workflow, estimate, urgent=self.urgent, now=now)
        if not ticket.admission.runs:
            raise BudgetDeferred(f"{self.workflow}: budget spent ({ticket.admission.action})")
        try:
            throttle(self.runtime, self.workflow, timeout_seconds=self.throttle_timeout_s)
        except TimeoutError as exc:
            settle(self.runtime, ticket, 0.0, now=datetime.now(UTC))  # nothing was sent
            raise LLMUnavailable(str(exc)) from exc
        return ticket

    def _actual(self, result: ChatResult, estimate: float) -> float:
        """The answer's cost at the model that gave it; an unpriced one counts as the estimate."""
        price = self.prices.get(result.served_by or self.inner.name)
        if price is None:
            return estimate
        return call_cost(
            price, input_tokens=result.input_tokens, output_tokens=result.output_tokens
        )
