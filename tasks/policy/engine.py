"""The supervisor's policy engine: ``decide(facts, rules) -> Decision``. Pure, no logging.

Rules are data (configs/policies.yaml), evaluated in their declared order; every rule that
matches contributes a reason (code + message). Effects combine safely:

    deny            -> not allowed
    require_review  -> allowed only through a human: never auto-accepted
    allow           -> recorded as a reason; cannot undo a deny or a review

A condition on a fact the caller did not supply is *unknown*. Unknown counts as a match for
deny and require_review rules (fail safe: a missing severity cannot dodge review) and as no
match for allow rules.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.rules import Condition, PolicyRule

DEFAULT_ALLOW = "DEFAULT_ALLOW"

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "in": lambda fact, value: fact in value,
    "not_in": lambda fact, value: fact not in value,
    "is_true": lambda fact, _value: fact is True,
    "is_false": lambda fact, _value: fact is False,
}


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    effect: str


@dataclass(frozen=True)
class Decision:
    """The outcome and every reason of record behind it."""

    allowed: bool
    requires_review: bool
    reasons: tuple[Reason, ...]

    @property
    def auto_accept(self) -> bool:
        """True only when nothing denies it and no human must see it."""
        return self.allowed and not self.requires_review

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)


def _holds(condition: Condition, facts: Mapping[str, Any]) -> bool | None:
    if condition.fact not in facts or facts[condition.fact] is None:
        return None
    try:
        return bool(_COMPARE[condition.op](facts[condition.fact], condition.value))
    except TypeError:
        return None


def _matches(rule: PolicyRule, facts: Mapping[str, Any]) -> bool:
    results = [_holds(c, facts) for c in rule.when]
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return rule.effect != "allow"
    return True


def decide(
    facts: Mapping[str, Any],
    rules: Sequence[PolicyRule],
    *,
    workflow: str | None = None,
    stage: str = "item",
) -> Decision:
    """Evaluate ``rules`` in order against ``facts``.

    Args:
        facts: named facts about the item (severity, serious, confidence, ...).
        rules: the policy, in evaluation order.
        workflow: only rules for this workflow (or for every workflow) apply.
        stage: only rules of this stage apply ("item", or "budget" once a budget is spent).
    """
    reasons = tuple(
        Reason(rule.code, rule.message, rule.effect)
        for rule in rules
        if rule.stage == stage
        and (not rule.workflows or workflow in rule.workflows)
        and _matches(rule, facts)
    )
    denied = any(r.effect == "deny" for r in reasons)
    review = any(r.effect == "require_review" for r in reasons)
    if not reasons:
        reasons = (Reason(DEFAULT_ALLOW, "no rule matched: allowed by default", "allow"),)
    return Decision(allowed=not denied, requires_review=review and not denied, reasons=reasons)
