from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.policy.engine import DEFAULT_ALLOW, decide
from tasks.rules import Condition, PolicyRule, load_policies
from tasks.settings import load_settings

REVIEW = PolicyRule(
    code="SEVERE",
    message="severity > 2",
    effect="require_review",
    when=[Condition(fact="severity", op="gt", value=2)],
)
DENY = PolicyRule(
    code="BLOCKED",
    message="blocked product",
    effect="deny",
    when=[Condition(fact="product", op="in", value=["x"])],
    workflows=["scan"],
)


@pytest.mark.parametrize(
    ("facts", "auto", "codes"),
    [
        ({"severity": 1, "product": "y"}, True, (DEFAULT_ALLOW,)),
        ({"severity": 3, "product": "y"}, False, ("SEVERE",)),
        ({"product": "y"}, False, ("SEVERE",)),  # missing severity cannot dodge review
        ({"severity": 1, "product": "x"}, False, ("BLOCKED",)),
    ],
)
def test_decide_combines_rules_in_order(facts, auto, codes):
    decision = decide(facts, [REVIEW, DENY], workflow="scan")
    assert decision.auto_accept is auto
    assert decision.codes == codes


def test_rule_scoped_to_other_workflow_does_not_apply():
    assert decide({"severity": 0, "product": "x"}, [REVIEW, DENY], workflow="triage").auto_accept


def test_shipped_policy_holds_serious_and_severe_cases():
    rules = load_policies(load_settings()).rules
    assert not decide({"severity": 3, "serious": False}, rules).auto_accept
    assert not decide({"severity": 1, "serious": True}, rules).auto_accept
    assert decide({"severity": 1, "serious": False, "verdict_valid": True}, rules).auto_accept


def test_policy_file_with_unknown_field_is_refused(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("home: data\n")
    (tmp_path / "policies.yaml").write_text(
        "rules:\n  - code: X_Y\n    message: m\n    effect: deny\n    colour: red\n"
        "    when: [{fact: a, op: eq, value: 1}]\n"
    )
    with pytest.raises(ConfigError, match="colour"):
        load_policies(load_settings(config_dir=tmp_path))


@pytest.mark.parametrize(
    ("on_exhaustion", "urgent", "action", "code"),
    [
        (
            "continue_if_urgent",
            True,
            "continue_over_budget",
            "BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES",
        ),
        ("continue_if_urgent", False, "defer", "BUDGET_EXHAUSTED_NOT_URGENT_DEFERRED"),
        ("continue_if_urgent", None, "defer", "BUDGET_EXHAUSTED_NOT_URGENT_DEFERRED"),
        ("defer", True, "defer", "BUDGET_EXHAUSTED_DEFERRED"),
        ("route_down", True, "route_down", "BUDGET_EXHAUSTED_ROUTED_DOWN"),
    ],
)
def test_shipped_policy_on_an_exhausted_budget(on_exhaustion, urgent, action, code):
    from tasks.policy.supervisor import on_exhausted
    from tasks.rules import Budget

    rules = load_policies(load_settings()).rules
    budget = Budget(workflow="w", period="day", usd=1.0, on_exhaustion=on_exhaustion)
    admission = on_exhausted(budget, rules, urgent=urgent)
    assert (admission.action, admission.alert) == (action, True)
    assert admission.reasons[0].code == code
    assert len(admission.reasons) == 1  # item-stage rules (severity...) do not leak in


def test_budget_rules_stay_out_of_item_decisions():
    rules = load_policies(load_settings()).rules
    decision = decide({"severity": 1, "serious": False, "verdict_valid": True}, rules)
    assert decision.codes == (DEFAULT_ALLOW,)
