"""What happens to a model call when its workflow's budget is spent. Pure: policy decides.

The budget-stage rules of configs/policies.yaml are evaluated with the facts ``on_exhaustion``
(from configs/budgets.yaml) and ``urgent``. Allowed means the call goes on over budget; denied
means it is deferred to the next window or, for a ``route_down`` budget, sent to a cheaper
path. Every outcome raises an alert; none drops the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tasks.policy.engine import Reason, decide
from tasks.settings import Budget, PolicyRule

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
    if decision.allowed:
        action: Action = "continue_over_budget"
    elif budget.on_exhaustion == "route_down":
        action = "route_down"
    else:
        action = "defer"
    return Admission(action, decision.reasons, alert=True)
