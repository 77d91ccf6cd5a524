"""The escalation lane's decision per answer, under the real policy in configs/policies.yaml."""

import pytest

from tasks.core.judge import Judgement
from tasks.core.verdict import Verdict
from tasks.rules import load_policies
from tasks.services.escalation import lane_decision
from tasks.settings import load_settings

RULES = load_policies(load_settings()).rules


def judged(ade: bool, seriousness: list[str]) -> Judgement:
    verdict = Verdict(
        is_adverse_drug_event=ade,
        suspect_drugs=["cisplatin"] if ade else [],
        reactions=["nephrotoxicity"] if ade else [],
        seriousness=seriousness,  # type: ignore[arg-type]
        summary="x",
    )
    return Judgement("1", verdict)


@pytest.mark.parametrize("validated", [True, False])
def test_an_adverse_event_is_always_a_case_candidate(validated):
    decision, reason = lane_decision(
        judged(True, ["hospitalisation"]), ["cisplatin"], rules=RULES, validated=validated
    )
    assert decision == "case_candidate"
    assert "SERIOUS_CASE_NEEDS_HUMAN" in reason


def test_only_a_validated_model_closes_a_no_event_answer_on_its_own():
    closed = lane_decision(judged(False, ["none_stated"]), [], rules=RULES, validated=True)
    held = lane_decision(judged(False, ["none_stated"]), [], rules=RULES, validated=False)
    assert closed[0] == "closed_negative" and "DEFAULT_ALLOW" in closed[1]
    assert held[0] == "human_review" and "UNVALIDATED_MODEL_CANNOT_CLOSE" in held[1]


def test_a_no_event_answer_that_names_a_seriousness_criterion_goes_to_a_human():
    decision, reason = lane_decision(judged(False, ["death"]), [], rules=RULES, validated=True)
    assert decision == "human_review" and "SERIOUS_CASE_NEEDS_HUMAN" in reason


def test_a_rejected_answer_goes_to_a_human_with_the_policy_code():
    failed = Judgement("1", None, failures=["schema: seriousness: not a list"] * 2)
    decision, reason = lane_decision(failed, [], rules=RULES, validated=True)
    assert decision == "human_review" and "MODEL_VERDICT_INVALID_NEEDS_HUMAN" in reason
