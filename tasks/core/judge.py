"""Asking the large model for a verdict: at most two answers per item, every call accounted.

A backend that is down or times out (after its own retries and the fallback chain) leaves the
item undecided: it stays in ``lake/escalations`` and the next run asks again. A malformed
answer (invalid JSON, wrong types, empty, a refusal, an inconsistent verdict) is asked once
more, told what was wrong (the same prompt would get the same answer at temperature 0); a
second bad answer sends the item to human review. No path accepts a bad answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from models.llm import LLM, ChatResult, LLMBadResponse, LLMUnavailable
from tasks.core.verdict import (
    InvalidVerdict,
    Verdict,
    messages_for,
    parse_verdict,
    retry_messages,
    verdict_schema,
)

MAX_ANSWERS = 2


@dataclass(frozen=True)
class Call:
    """One answered call: what it used, for the ledger."""

    attempt: int
    served_by: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Judgement:
    item_id: str
    verdict: Verdict | None
    calls: list[Call] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unavailable: bool = False

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def outcome(self) -> str:
        if self.verdict is not None:
            return "verdict"
        return "deferred" if self.unavailable else "human_review"


def judge(
    llm: LLM,
    *,
    item_id: str,
    title: str | None,
    abstract: str | None,
    products: Sequence[str],
    max_tokens: int,
) -> Judgement:
    """Ask ``llm`` for a verdict on one item (see the module docstring for the failure rules)."""
    first = messages_for(title, abstract, products)
    messages = first
    schema = verdict_schema()
    calls: list[Call] = []
    failures: list[str] = []
    for attempt in range(1, MAX_ANSWERS + 1):
        try:
            result: ChatResult = llm.chat(messages, schema=schema, max_tokens=max_tokens)
        except LLMUnavailable as exc:
            failures.append(f"unavailable: {exc}")
            return Judgement(item_id, None, calls, failures, unavailable=True)
        except LLMBadResponse as exc:
            failures.append(f"bad_response: {exc}")
            messages = first
            continue
        calls.append(
            Call(attempt, result.served_by or llm.name, result.input_tokens, result.output_tokens)
        )
        try:
            verdict = parse_verdict(result.text, record=item_id, refusal=result.refusal)
        except InvalidVerdict as exc:
            failures.append(str(exc))
            messages = retry_messages(first, result.text, exc.problem)
            continue
        return Judgement(item_id, verdict, calls, failures)
    return Judgement(item_id, None, calls, failures)
