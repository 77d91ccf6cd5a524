"""What happens to a model call when its workflow's budget is spent. Pure: policy decides.

The budget-stage rules of configs/policies.yaml are evaluated with the facts ``on_exhaustion``
(from configs/budgets.yaml) and ``urgent``. Allowed means the call goes on over budget; denied
means it is deferred to the next window or, for a ``route_down`` budget, sent to a cheaper
path. Every outcome raises an alert; none drops the item.

Going on over budget is the one way past a budget's limit, so it is granted only to work known
to be urgent (``urgent is True``) and only through an explicit ``allow`` rule: a policy with
no matching budget rule (``DEFAULT_ALLOW``) defers instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tasks.policy.engine import DEFAULT_ALLOW, Reason, decide
from tasks.rules import Budget, PolicyRule

NO_OVERRIDE_RULE = Reason(
    "BUDGET_EXHAUSTED_NO_OVERRIDE_RULE",
    "budget spent: only urgent safety work with an explicit allow rule goes on over budget",
    "deny",
)

Action = Literal["run", "continue_over_budget", "defer", "route_down"]


@dataclass(frozen=True)
class Admission:
    action: Action
    reasons: tuple[Reason, ...]
    alert: bool

    @property
    def runs(self) -> bool:
        return self.action in ("run", "continue_over_budget")


def on_exhausted(budget: Budget, rules: Sequence[PolicyRule], *, urgent: bool | None) -> Admission:
    """The admission of a call whose reservation ``budget`` refused.

    Args:
        budget: the spent budget (its ``on_exhaustion`` is a fact for the policy).
        rules: the whole policy; only ``stage: budget`` rules are read.
        urgent: whether the item is urgent safety work; None (unknown) is treated as not urgent.
    """
    decision = decide(
        {"on_exhaustion": budget.on_exhaustion, "urgent": urgent},
        rules,
        workflow=budget.workflow,
        stage="budget",
    )
    explicit = any(r.effect == "allow" and r.code != DEFAULT_ALLOW for r in decision.reasons)
    if decision.allowed and explicit and urgent is True:
        return Admission("continue_over_budget", decision.reasons, alert=True)
    reasons = decision.reasons if not decision.allowed else (NO_OVERRIDE_RULE,)
    action: Action = "route_down" if budget.on_exhaustion == "route_down" else "defer"
    return Admission(action, reasons, alert=True)
