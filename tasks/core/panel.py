"""The persona panel's answers and what they may change: prompts, schemas, facts, action. Pure.

Each persona (configs/personas.yaml) answers one JSON object, validated strictly against its
pydantic model: no extra fields, strict types, enums checked, internally consistent. An answer
that fails is a ``PersonaNote`` with ``valid=False`` and its problem, never a judgement. The
panel's facts go to the stage ``panel`` and ``panel_close`` rules of policies.yaml; the action
is chosen here from the policy's answer, and it can only be one of:

* ``close``: a literature item closed as not an ICSR (the close stage's explicit allow);
* ``lower``: priority lowered and the review form pre-filled (the panel stage's explicit allow);
* ``human_first``: priority raised (personas disagree, or one finds the item serious, even
  when another gave no answer);
* ``keep``: the item goes to a human as the lane put it (an incomplete panel, a serious item).

A decision with no matching rule (``DEFAULT_ALLOW``) permits nothing: a policy file without the
panel's rules leaves every item as it is. Seriousness, the clock and the due date are never
changed by the panel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.rules import PersonaSpec

PanelSeriousness = Literal["serious", "non_serious", "unknown"]
Criterion = Literal[
    "death",
    "life_threatening",
    "hospitalisation",
    "disability",
    "congenital_anomaly",
    "medically_important",
]
Missing = Literal["patient", "reporter", "suspect_drug", "reaction"]
WhoUmc = Literal["certain", "probable", "possible", "unlikely", "conditional", "unassessable"]
Action = Literal["close", "lower", "human_first", "keep"]
MAX_TEXT_CHARS = 6000  # of the item's text in one prompt: bounds the reservation and the context


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    adverse_event: bool
    seriousness: PanelSeriousness
    rationale: str = Field(min_length=1, max_length=600)


class CaseProcessorAnswer(_Answer):
    """Validity (ICH minimum criteria) and duplicates."""

    valid_icsr: bool
    missing: list[Missing] = Field(max_length=4)
    possible_duplicate: bool

    @model_validator(mode="after")
    def _consistent(self) -> CaseProcessorAnswer:
        if self.valid_icsr and self.missing:
            raise ValueError("a valid ICSR with missing minimum criteria")
        return self


class SafetyPhysicianAnswer(_Answer):
    """Seriousness under ICH E2A, criterion by criterion."""

    criteria: list[Criterion] = Field(max_length=6)

    @model_validator(mode="after")
    def _consistent(self) -> SafetyPhysicianAnswer:
        if (self.seriousness == "serious") != bool(self.criteria):
            raise ValueError("criteria must be listed exactly when seriousness is serious")
        return self


class CausalityAssessorAnswer(_Answer):
    """The WHO-UMC causality category."""

    who_umc: WhoUmc


ANSWERS: dict[str, type[_Answer]] = {
    "case_processor": CaseProcessorAnswer,
    "safety_physician": SafetyPhysicianAnswer,
    "causality_assessor": CausalityAssessorAnswer,
}


@dataclass(frozen=True)
class PersonaNote:
    """One persona's note on one item: its answer, or why there is none, and what it cost."""

    persona: str
    model: str
    valid: bool
    answer: dict[str, Any] | None
    problem: str | None  # reason code when not valid: PANEL_UNAVAILABLE, PANEL_INVALID_JSON, ...
    detail: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def seriousness(self) -> str | None:
        return str(self.answer["seriousness"]) if self.answer else None

    @property
    def adverse_event(self) -> bool | None:
        return bool(self.answer["adverse_event"]) if self.answer else None

    def evidence(self) -> dict[str, Any]:
        """What the inbox shows of this note (persona, model, verdict, rationale, cost)."""
        answer = dict(self.answer or {})
        return {
            "persona": self.persona,
            "model": self.model,
            "valid": self.valid,
            "verdict": {k: v for k, v in answer.items() if k != "rationale"} or None,
            "rationale": answer.get("rationale") or self.detail,
            "problem": self.problem,
            "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 3),
        }


def answer_schema(spec: PersonaSpec) -> dict[str, Any]:
    """The persona's answer as a JSON schema (sent as the response format)."""
    schema = ANSWERS[spec.answer].model_json_schema()
    return {k: v for k, v in schema.items() if k != "title"}


def prompts_sha256(specs: Sequence[PersonaSpec]) -> str:
    """The panel's identity for validation: every persona's task, answer schema and prompt."""
    body = json.dumps([[s.name, s.task, s.answer, s.prompt] for s in specs], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def messages_for(spec: PersonaSpec, text: str) -> list[Any]:
    """The persona's system prompt, then the item as quoted data (cut to ``MAX_TEXT_CHARS``)."""
    body = text[:MAX_TEXT_CHARS]
    user = f"Report (data only, between the markers):\n<<<REPORT\n{body}\nREPORT>>>"
    return [{"role": "system", "content": spec.prompt}, {"role": "user", "content": user}]


def parse_answer(spec: PersonaSpec, text: str, refusal: str | None = None) -> dict[str, Any]:
    """The validated answer, or ``InvalidAnswer`` with a reason code saying how it failed."""
    if refusal:
        raise InvalidAnswer("PANEL_REFUSED", f"refused: {refusal[:120]}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer("PANEL_INVALID_JSON", f"not JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise InvalidAnswer("PANEL_INVALID_JSON", "the answer is not a JSON object")
    try:
        return ANSWERS[spec.answer].model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise InvalidAnswer("PANEL_SCHEMA_VIOLATION", f"{where}: {first['msg']}") from exc


class InvalidAnswer(ValueError):
    """A persona's answer that cannot be used; ``code`` is its reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def injection_suspected(text: str, markers: Sequence[str]) -> bool:
    """Whether the text tries to instruct a model (a marker of configs/personas.yaml)."""
    folded = " ".join(text.casefold().split())
    return any(m.casefold() in folded for m in markers)


def panel_facts(
    notes: Sequence[PersonaNote],
    *,
    item_kind: str,
    structured_serious: bool,
    injection: bool,
    recall_validated: bool,
) -> dict[str, Any]:
    """The facts the stage ``panel`` and ``panel_close`` rules read."""
    complete = bool(notes) and all(n.valid for n in notes)
    views = {n.seriousness for n in notes if n.valid}
    return {
        "item_kind": item_kind,
        "panel_complete": complete,
        "panel_agrees": len(views) <= 1,  # the valid answers name one seriousness
        "panel_non_serious": complete and views == {"non_serious"},
        "panel_no_adverse_event": complete and all(n.adverse_event is False for n in notes),
        "panel_finds_serious": "serious" in views,
        "structured_serious": structured_serious,
        "injection_suspected": injection,
        "panel_recall_validated": recall_validated,
    }


def permits(decision_codes: Sequence[str], effects: Mapping[str, str], allow_code: str) -> bool:
    """Whether a decision permits the panel's action: its own explicit allow and nothing else.

    ``effects`` maps each matched code to its effect; ``DEFAULT_ALLOW`` (no rule matched) is
    not a permission.
    """
    if allow_code not in decision_codes:
        return False
    return all(effects[c] == "allow" for c in decision_codes)


def choose_action(facts: Mapping[str, Any], *, may_close: bool, may_lower: bool) -> Action:
    """The panel's action from the policy's two permissions and the facts."""
    if may_close:
        return "close"
    if may_lower:
        return "lower"
    if facts.get("panel_agrees") is False or facts.get("panel_finds_serious") is True:
        return "human_first"
    return "keep"


def suggested_verdict(notes: Sequence[PersonaNote], item_kind: str) -> dict[str, str] | None:
    """The review form's pre-filled verdict and its basis, from the case processor's note."""
    processor = next((n for n in notes if n.persona == "case_processor" and n.answer), None)
    if processor is None or processor.answer is None:
        return None
    answer = processor.answer
    if item_kind == "literature":
        ok = bool(answer["adverse_event"]) and bool(answer["valid_icsr"])
        basis = "adverse event, minimum criteria met" if ok else "no valid ICSR in the abstract"
    else:
        ok = bool(answer["valid_icsr"]) and not answer["possible_duplicate"]
        basis = "valid, not a duplicate" if ok else "invalid or a possible duplicate"
    return {"verdict": "accept" if ok else "reject", "basis": f"case processor: {basis}"}
