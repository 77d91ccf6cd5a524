"""Large-model calls that are paid once and only within budget.

``SupervisedLLM`` wraps the served model (it is itself an ``LLM``), so the lane and the ladder
evaluation ask through it exactly as they would ask the model:

1. a question already answered (same model, messages, schema, max_tokens) is replayed from the
   paid-call journal: no call, no cost, no reservation: a resumed run never pays twice;
2. otherwise the supervisor reserves the worst case, a true upper bound: every token the call
   may use (one per UTF-8 byte of the prompt and schema, plus template overhead, and
   ``max_tokens`` out) at the price of the most expensive model it may end on (the primary or
   any fallback), against the workflow's budget; a refusal raises
   ``BudgetDeferred``, an ``LLMUnavailable``, so the item stays pending for the next window
   (urgent items go on when policy says so), and an alert goes to the audit trail;
3. it waits for a throttle slot, calls, commits the answer to the journal, then settles the
   reservation at the cost of the tokens actually used, priced at the model that answered. A
   call that failed may still have been billed: it settles at its estimate.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.llm import LLM, ChatMessage, ChatResult, LLMUnavailable
from tasks.core.batches import stable_id
from tasks.core.judge import Judgement, judge
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_VERSION
from tasks.errors import ConfigError
from tasks.io.call_journal import CallJournal, call_key
from tasks.rules import ModelPrice, load_models
from tasks.settings import Settings
from tasks.steps.resources import VERDICT_TASK
from tasks.steps.supervisor import admit, settle, throttle

MESSAGE_OVERHEAD_TOKENS = 16  # chat-template tokens around each message (role, separators)
PROMPT_OVERHEAD_TOKENS = 128  # template head (a default system prompt) and the assistant turn


class BudgetDeferred(LLMUnavailable):
    """The workflow's budget is spent: the call was not made, the item waits."""


@functools.cache
def _journal(path: str) -> CallJournal:
    return CallJournal(Path(path))


def journal(settings: Settings) -> CallJournal:
    """One journal per file and process (a SQLite connection per thread)."""
    return _journal(str(settings.supervisor_dir / "llm_calls.sqlite"))


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
        settings: Settings,
        *,
        workflow: str,
        urgent: bool | None = False,
        prices: Mapping[str, ModelPrice] | None = None,
    ):
        self.inner = inner
        self.settings = settings
        self.workflow = workflow
        self.urgent = urgent
        self.replayed = 0
        self.called = 0
        self.prices = prices if prices is not None else load_models(settings).models
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
            self.inner, self.settings, workflow=self.workflow, urgent=urgent, prices=self.prices
        )

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatResult:
        store = journal(self.settings)
        key = call_key(self.inner.name, messages, schema, max_tokens)
        kept = store.get(key)
        if kept is not None:
            self.replayed += 1
            return kept
        now = datetime.now(UTC)
        estimate = estimate_usd(
            [self.prices[m] for m in self.may_serve], messages, max_tokens, schema
        )
        ticket = admit(self.settings, self.workflow, estimate, urgent=self.urgent, now=now)
        if not ticket.admission.runs:
            raise BudgetDeferred(f"{self.workflow}: budget spent ({ticket.admission.action})")
        try:
            throttle(self.settings, self.workflow)
        except TimeoutError as exc:
            settle(self.settings, ticket, 0.0, now=datetime.now(UTC))  # nothing was sent
            raise LLMUnavailable(str(exc)) from exc
        try:
            result = self.inner.chat(messages, schema=schema, max_tokens=max_tokens)
        except Exception:
            settle(self.settings, ticket, estimate, now=datetime.now(UTC))  # may have been billed
            raise
        store.put(key, result, datetime.now(UTC))
        self.called += 1
        settle(self.settings, ticket, self._actual(result, estimate), now=datetime.now(UTC))
        return result

    def _actual(self, result: ChatResult, estimate: float) -> float:
        """The answer's cost at the model that gave it; an unpriced one counts as the estimate."""
        price = self.prices.get(result.served_by or self.inner.name)
        if price is None:
            return estimate
        return call_cost(
            price, input_tokens=result.input_tokens, output_tokens=result.output_tokens
        )


def judge_row(llm: LLM, row: Mapping[str, Any], settings: Settings) -> Judgement:
    """The large model's judgement of one lake row (item_id, title, abstract, products)."""
    return judge(
        llm,
        item_id=row["item_id"],
        title=row["title"],
        abstract=row["abstract"],
        products=row["products"] or [],
        max_tokens=settings.llm.max_tokens,
    )


def ledger_rows(
    row: Mapping[str, Any],
    judged: Judgement,
    prices: Mapping[str, ModelPrice],
    *,
    workflow: str,
    pattern: str,
    attempt_tag: str,
    run_id: str,
    chunk: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """One priced LEDGER row per answered call of ``judged``.

    The call id is derived from the item, its content, the model, the attempt (tagged per
    workflow) and the prompt version, so a replayed call is booked once.
    """
    key = f"{row['item_id']}:{row['content_hash']}"
    rows: list[dict[str, Any]] = []
    for call in judged.calls:
        price = prices[call.served_by]
        rows.append(
            {
                "call_id": stable_id(
                    [key, call.served_by, f"{attempt_tag}-{call.attempt}", PROMPT_VERSION], "call"
                ),
                "workflow": workflow,
                "run_id": run_id,
                "chunk_id": chunk,
                "task": VERDICT_TASK,
                "model": call.served_by,
                "backend": price.backend,
                "pattern": pattern,
                "n_items": 1,
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
                "gpu_seconds": 0.0,
                "cost_usd": call_cost(
                    price, input_tokens=call.input_tokens, output_tokens=call.output_tokens
                ),
                "created_at": now,
                "day": now.date().isoformat(),
            }
        )
    return rows
