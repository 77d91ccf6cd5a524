"""Going on over budget needs urgent work and an explicit allow rule; anything else defers."""

from __future__ import annotations

import pytest

from tasks.policy.supervisor import on_exhausted
from tasks.rules import Budget, PolicyRule

URGENT = Budget(workflow="w", period="day", usd=1.0, on_exhaustion="continue_if_urgent")


def rule(effect: str, *conditions: dict) -> PolicyRule:
    return PolicyRule(
        code="BUDGET_TEST", message="m", effect=effect, stage="budget", when=list(conditions)
    )


ON_URGENT = {"fact": "on_exhaustion", "op": "eq", "value": "continue_if_urgent"}


@pytest.mark.parametrize("urgent", [True, False, None])
def test_no_budget_rule_at_all_never_overrides(urgent):
    admission = on_exhausted(URGENT, [], urgent=urgent)
    assert admission.action == "defer" and admission.alert
    assert [r.code for r in admission.reasons] == ["BUDGET_EXHAUSTED_NO_OVERRIDE_RULE"]


@pytest.mark.parametrize("urgent", [False, None])
def test_an_allow_rule_without_urgency_does_not_let_routine_work_overspend(urgent):
    admission = on_exhausted(URGENT, [rule("allow", ON_URGENT)], urgent=urgent)
    assert admission.action == "defer"
    assert [r.code for r in admission.reasons] == ["BUDGET_EXHAUSTED_NO_OVERRIDE_RULE"]


def test_urgent_work_with_an_explicit_allow_rule_goes_on():
    admission = on_exhausted(URGENT, [rule("allow", ON_URGENT)], urgent=True)
    assert (admission.action, [r.code for r in admission.reasons]) == (
        "continue_over_budget",
        ["BUDGET_TEST"],
    )
    route = Budget(workflow="w", period="day", usd=1.0, on_exhaustion="route_down")
    assert on_exhausted(route, [], urgent=True).action == "route_down"
