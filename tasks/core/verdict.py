"""The large model's verdict on an escalated abstract: prompt, schema, validation. Pure.

Every prompt starts with the same system message (a fixed prefix, so vLLM's prefix cache and
llama.cpp's prompt cache reuse it); only the user message varies. An answer is accepted only
when it parses as JSON, matches ``Verdict`` exactly and is internally consistent; anything
else is an ``InvalidVerdict`` naming the item and the field, which the lane retries once and
then sends to human review. Nothing here ever turns a bad answer into a decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import DataContractError

Seriousness = Literal[
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "other_medically_important",
    "none_stated",
]

SYSTEM_PROMPT = (
    "You are a pharmacovigilance assessor screening published abstracts. Decide whether the "
    "abstract reports an adverse drug event: a harmful reaction that a drug caused or is "
    "suspected to have caused in humans or animals (including toxicity and drug-induced "
    "disease). A study of a drug's benefit with no harm reported is not an adverse event "
    "report. Answer with only one JSON object of exactly this shape:\n"
    '{"is_adverse_drug_event": true, "suspect_drugs": ["drug name as written"], '
    '"reactions": ["reaction as written"], "seriousness": ["hospitalisation"], '
    '"summary": "one or two sentences"}\n'
    "is_adverse_drug_event is true or false. suspect_drugs, reactions and seriousness are "
    "always lists, possibly empty; reactions is empty when there is no adverse event. "
    "seriousness lists any of: death, life_threatening, hospitalisation, disability, "
    'congenital_anomaly, other_medically_important, none_stated (["none_stated"] when no '
    "criterion is stated)."
)

PROMPT_SHA256 = hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()
PROMPT_VERSION = PROMPT_SHA256[:12]  # in call ids and stored verdicts: a new prompt asks anew


class Verdict(BaseModel):
    """What the large model must return, exactly (no extra fields, strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    is_adverse_drug_event: bool
    suspect_drugs: list[str] = Field(max_length=20)
    reactions: list[str] = Field(max_length=30)
    seriousness: list[Seriousness] = Field(max_length=7)
    summary: str = Field(min_length=1, max_length=2000)


_GRAMMAR_UNSAFE = {"maxItems", "maxLength", "minLength", "title"}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _GRAMMAR_UNSAFE}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def verdict_schema() -> dict[str, Any]:
    """The JSON schema sent as the response format (constrained decoding).

    Length bounds are left out: llama.cpp unrolls them into grammars it cannot always parse
    (a 20-item bound crashed its server here). ``parse_verdict`` still enforces them.
    """
    schema: dict[str, Any] = _strip(Verdict.model_json_schema())
    return schema


def messages_for(title: str | None, abstract: str | None, products: Sequence[str]) -> list[Any]:
    """The chat messages for one item: the fixed system prefix, then the item."""
    watched = ", ".join(products) if products else "none"
    user = (
        f"Watched products mentioned: {watched}\n"
        f"Title: {(title or '').strip()}\n"
        f"Abstract: {(abstract or '').strip()}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def retry_messages(messages: Sequence[Any], answer: str, problem: str) -> list[Any]:
    """The conversation for the one retry: the bad answer and what was wrong with it.

    Asking again with the same prompt would return the same answer (temperature 0, and
    llama.cpp serves it from its prompt cache), so the retry tells the model what to fix.
    """
    correction = (
        f"That answer was rejected ({problem}). Reply again with only the JSON object, "
        "with exactly the fields listed and the right types."
    )
    return [
        *messages,
        {"role": "assistant", "content": answer[:2000]},
        {"role": "user", "content": correction},
    ]


class InvalidVerdict(DataContractError):
    """The model's answer is not an acceptable verdict; ``kind`` says how it failed."""

    def __init__(self, kind: str, message: str, *, record: str, field: str | None = None):
        super().__init__(f"{kind}: {message}", record=record, field=field)
        self.kind = kind
        self.problem = f"{kind}: {field + ': ' if field else ''}{message}"


def parse_verdict(text: str, *, record: str, refusal: str | None = None) -> Verdict:
    """The verdict in ``text``, or ``InvalidVerdict`` saying why it is not one.

    Args:
        text: the model's message content.
        record: the item id, named in every error.
        refusal: the refusal message the API returned instead of content, if any.
    """
    if refusal:
        raise InvalidVerdict("refusal", f"model refused: {refusal[:120]}", record=record)
    if not text.strip():
        raise InvalidVerdict("empty", "model returned no content", record=record)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidVerdict("invalid_json", f"not JSON ({exc.msg})", record=record) from exc
    if not isinstance(data, dict):
        raise InvalidVerdict("wrong_type", "answer is not a JSON object", record=record)
    try:
        verdict = Verdict.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidVerdict(
            "schema", f"{first['msg']} ({exc.error_count()} errors)", record=record, field=where
        ) from exc
    if verdict.is_adverse_drug_event and not [r for r in verdict.reactions if r.strip()]:
        raise InvalidVerdict(
            "inconsistent", "an adverse event with no reaction", record=record, field="reactions"
        )
    return verdict


def product_among_suspects(verdict: Verdict, products: Sequence[str]) -> bool:
    """Whether a watched product is named (case-insensitively) among the suspect drugs."""
    suspects = " | ".join(verdict.suspect_drugs).lower()
    return any(p.lower() in suspects for p in products)


def decision_of(verdict: Verdict, products: Sequence[str]) -> tuple[str, str]:
    """(decision, reason of record) for an accepted verdict."""
    if not verdict.is_adverse_drug_event:
        return "closed_negative", "large model: no adverse drug event reported"
    named = product_among_suspects(verdict, products)
    reactions = ", ".join(verdict.reactions[:3])
    which = "a watched product is a suspect" if named else "no watched product named as suspect"
    return "case_candidate", f"large model: adverse drug event ({reactions}); {which}"
