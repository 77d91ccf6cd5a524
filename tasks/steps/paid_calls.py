"""Large-model calls that are paid once and only within budget.

``SupervisedLLM`` wraps the served model (it is itself an ``LLM``), so the lane and the ladder
evaluation ask through it exactly as they would ask the model:

1. a question already answered (same model, messages, schema, max_tokens) is replayed from the
   paid-call journal: no call, no cost, no reservation: a resumed run never pays twice;
2. otherwise the supervisor reserves the worst-case cost (prompt tokens estimated from its
   characters, ``max_tokens`` out) against the workflow's budget; a refusal raises
   ``BudgetDeferred``, an ``LLMUnavailable``, so the item stays pending for the next window
   (urgent items go on when policy says so), and an alert goes to the audit trail;
3. it waits for a throttle slot, calls, commits the answer to the journal, then settles the
   reservation at the cost of the tokens actually used.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.llm import LLM, ChatMessage, ChatResult, LLMUnavailable
from tasks.core.chunks import stable_id
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_VERSION
from tasks.io.call_journal import CallJournal, call_key
from tasks.io.judge import Judgement, judge
from tasks.settings import ModelPrice, Settings, load_models
from tasks.steps.resources import VERDICT_TASK
from tasks.steps.supervisor import admit, settle, throttle

CHARS_PER_TOKEN = 3  # conservative: English runs ~4 characters per token


class BudgetDeferred(LLMUnavailable):
    """The workflow's budget is spent: the call was not made, the item waits."""


@functools.cache
def _journal(path: str) -> CallJournal:
    return CallJournal(Path(path))


def journal(settings: Settings) -> CallJournal:
    """One journal per file and process (a SQLite connection per thread)."""
    return _journal(str(settings.supervisor_dir / "llm_calls.sqlite"))


def estimate_usd(
    price: ModelPrice, messages: Sequence[Mapping[str, Any]], max_tokens: int
) -> float:
    """The most this call can cost: prompt tokens estimated high, every output token used."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return call_cost(price, input_tokens=chars // CHARS_PER_TOKEN + 64, output_tokens=max_tokens)


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
        price = self.prices[self.inner.name]
        now = datetime.now(UTC)
        ticket = admit(
            self.settings,
            self.workflow,
            estimate_usd(price, messages, max_tokens),
            urgent=self.urgent,
            now=now,
        )
        if not ticket.admission.runs:
            raise BudgetDeferred(f"{self.workflow}: budget spent ({ticket.admission.action})")
        try:
            throttle(self.settings, self.workflow)
        except TimeoutError as exc:
            settle(self.settings, ticket, 0.0, now=datetime.now(UTC))
            raise LLMUnavailable(str(exc)) from exc
        try:
            result = self.inner.chat(messages, schema=schema, max_tokens=max_tokens)
        except Exception:
            settle(self.settings, ticket, 0.0, now=datetime.now(UTC))
            raise
        served = result.served_by or self.inner.name
        store.put(key, result, datetime.now(UTC))
        self.called += 1
        actual = call_cost(
            self.prices.get(served, price),
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        settle(self.settings, ticket, actual, now=datetime.now(UTC))
        return result


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
