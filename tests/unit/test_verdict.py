import json

import pytest

from tasks.core.verdict import (
    InvalidVerdict,
    decision_of,
    messages_for,
    parse_verdict,
    verdict_schema,
)

GOOD = {
    "is_adverse_drug_event": True,
    "suspect_drugs": ["Cisplatin"],
    "reactions": ["nephrotoxicity"],
    "seriousness": ["hospitalisation"],
    "summary": "Renal failure after cisplatin.",
}


def test_a_valid_answer_is_accepted_and_decides_a_case():
    verdict = parse_verdict(json.dumps(GOOD), record="pmid-1")
    decision, reason = decision_of(verdict, ["cisplatin"])
    assert decision == "case_candidate"
    assert "nephrotoxicity" in reason and "watched product is a suspect" in reason


def test_a_negative_answer_closes_the_item():
    answer = {**GOOD, "is_adverse_drug_event": False, "reactions": [], "suspect_drugs": []}
    verdict = parse_verdict(json.dumps(answer), record="pmid-1")
    assert decision_of(verdict, ["cisplatin"])[0] == "closed_negative"


@pytest.mark.parametrize(
    ("text", "refusal", "kind", "field"),
    [
        ('{"is_adverse_drug_event": true,', None, "invalid_json", None),
        ("", None, "empty", None),
        ("   ", None, "empty", None),
        ("[1, 2]", None, "wrong_type", None),
        (
            json.dumps({**GOOD, "is_adverse_drug_event": "yes"}),
            None,
            "schema",
            "is_adverse_drug_event",
        ),
        (json.dumps({**GOOD, "is_adverse_drug_event": 1}), None, "schema", "is_adverse_drug_event"),
        (json.dumps({**GOOD, "reactions": "rash"}), None, "schema", "reactions"),
        (json.dumps({**GOOD, "seriousness": ["mild"]}), None, "schema", "seriousness.0"),
        (json.dumps({**GOOD, "verdict": "ok"}), None, "schema", "verdict"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "summary"}), None, "schema", "summary"),
        (json.dumps({**GOOD, "reactions": []}), None, "inconsistent", "reactions"),
        (json.dumps(GOOD), "I can't help with that.", "refusal", None),
        ("I'm sorry, I cannot assess medical content.", None, "invalid_json", None),
    ],
)
def test_bad_answers_are_refused_naming_record_and_field(text, refusal, kind, field):
    with pytest.raises(InvalidVerdict) as caught:
        parse_verdict(text, record="pmid-7", refusal=refusal)
    assert caught.value.kind == kind
    assert caught.value.record == "pmid-7"
    assert caught.value.field == field
    assert "record pmid-7" in str(caught.value)


def test_every_prompt_shares_the_same_system_prefix():
    a = messages_for("Title A", "Abstract A", ["aspirin"])
    b = messages_for("Title B", "Abstract B", [])
    assert a[0] == b[0] and a[0]["role"] == "system"
    assert "aspirin" in a[1]["content"] and "Abstract B" in b[1]["content"]


def test_the_schema_names_every_field_as_required():
    schema = verdict_schema()
    assert set(schema["required"]) == set(GOOD)
    assert schema["additionalProperties"] is False
