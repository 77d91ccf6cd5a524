"""The persona panel: model personas pre-validate an item before it reaches the review inbox.

Each persona of configs/personas.yaml (case processor, safety physician, causality assessor)
is one model call with its own prompt and answer schema, its model chosen per persona in
configs/models.yaml, asked through ``SupervisedLLM`` as workflow ``persona-panel``: replayed
from the paid-call journal when already answered (a retried fill never pays twice), otherwise
reserved against the panel's budget, throttled, settled, and booked in the ledger with the
item's id. The notes (persona, model, verdict, rationale, cost) go into the item's evidence.

What the notes may change is policy (the stage ``panel`` and ``panel_close`` rules of
policies.yaml, tasks/core/panel.py): lower the priority and pre-fill the review form of an
item every persona finds non-serious; raise the priority of one they disagree on; close a
literature item on a validated panel's "no adverse event". Never the seriousness, the clock or
a triage case's outcome. A persona that is down, times out, answers garbage, or finds the
budget spent or the throttle full gives no note: the item goes to a human as the lane left it,
with the reason code (PANEL_UNAVAILABLE, PANEL_INVALID_JSON, PANEL_SCHEMA_VIOLATION,
PANEL_BUDGET_EXHAUSTED, PANEL_THROTTLED, ...).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from models.llm import ChatResult, LLMBadResponse, LLMUnavailable
from tasks.core.batches import stable_id
from tasks.core.ladder import recall_validated
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.panel import (
    InvalidAnswer,
    PersonaNote,
    answer_schema,
    choose_action,
    injection_suspected,
    messages_for,
    panel_facts,
    parse_answer,
    permits,
    prompts_sha256,
    suggested_verdict,
)
from tasks.core.pricing import call_cost
from tasks.io.reports import read_json
from tasks.policy.engine import decide
from tasks.rules import PersonaSpec
from tasks.schemas import LEDGER, PANEL_REVIEW, InboxItem
from tasks.services.runtime import Runtime
from tasks.services.supervisor import BudgetDeferred, SupervisedLLM

WORKFLOW = "persona-panel"
REVIEWER = "persona-panel"  # the resolver of record of an item the panel closed
LOWER_CODE = "PANEL_AGREES_NON_SERIOUS"
CLOSE_CODE = "PANEL_VALIDATED_NO_ADVERSE_EVENT_CLOSES"
STOPPING = ("PANEL_BUDGET_EXHAUSTED", "PANEL_THROTTLED")  # no further call in this fill


@dataclass
class PanelRun:
    """One fill's panel work: what it booked, and which backends it found closed."""

    run_id: str
    now: datetime
    ledger: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)  # model key -> its problem code
    stopped: str | None = None  # budget spent or throttled: nothing more is asked


@dataclass(frozen=True)
class Reviewed:
    """An item as the panel leaves it, and whether the panel closes it."""

    item: InboxItem
    close: bool = False


def prevalidate(runtime: Runtime, items: list[InboxItem], run: PanelRun) -> list[Reviewed]:
    """The panel's pass over ``items`` (new to the inbox), in order; items out of scope as is."""
    out = []
    for item in items:
        text, structured_serious, why_not = _input(runtime, item)
        if why_not:
            skipped = {"asked": False, "reason_codes": [why_not]}
            out.append(Reviewed(replace(item, evidence={**item.evidence, "panel": skipped})))
            continue
        notes = [_ask(runtime, spec, item, text, run) for spec in _personas(runtime)]
        out.append(_apply(runtime, item, notes, text, structured_serious, run))
    return out


def _personas(runtime: Runtime) -> list[PersonaSpec]:
    return list(runtime.rules.personas.personas)


def _input(runtime: Runtime, item: InboxItem) -> tuple[str, bool, str | None]:
    """(text the personas read, a structured criterion is met, why the panel is not asked)."""
    scope = runtime.rules.personas.scope
    if item.kind == "literature":
        if not scope.literature:
            return "", False, "PANEL_NOT_ASKED_OUT_OF_SCOPE"
        criteria = [
            s
            for s in (item.evidence.get("case") or {}).get("seriousness") or []
            if s != "none_stated"
        ]
        return _literature_text(item), bool(criteria), None
    serious = (item.evidence.get("decision") or {}).get("serious") is True
    if not scope.triage:
        return "", serious, "PANEL_NOT_ASKED_OUT_OF_SCOPE"
    if serious and not scope.triage_with_structured_criterion:
        return "", True, "PANEL_NOT_ASKED_STRUCTURED_SERIOUS"
    stored = runtime.triage_store.get(item.source_id)
    if stored is None:
        return "", serious, "PANEL_NOT_ASKED_NO_CASE"
    case = stored.case.model_dump(mode="json", exclude={"case_id", "received_at"})
    narrative = case.pop("narrative", "")
    text = f"Structured fields: {json.dumps(case, sort_keys=True)}\nNarrative: {narrative}"
    return text, serious, None


def _literature_text(item: InboxItem) -> str:
    evidence = item.evidence
    products = ", ".join(evidence.get("products") or []) or "none"
    return (
        f"Watched products: {products}\n"
        f"Title: {(evidence.get('title') or '').strip()}\n"
        f"Abstract: {(evidence.get('abstract') or '').strip()}"
    )


def _ask(
    runtime: Runtime, spec: PersonaSpec, item: InboxItem, text: str, run: PanelRun
) -> PersonaNote:
    """One persona's note, asked through the supervisor; a failure is a note with its code."""
    key = runtime.rules.models.tasks[spec.task]
    if run.stopped or key in run.down:
        code = run.stopped or run.down[key]
        return PersonaNote(spec.name, key, False, None, code, "not asked: stopped in this fill")
    wait = runtime.settings.panel.throttle_wait_s
    model = SupervisedLLM(
        runtime.model(key), runtime, workflow=WORKFLOW, urgent=False, throttle_timeout_s=wait
    )
    messages, started = messages_for(spec, text), time.monotonic()
    try:
        result = model.chat(messages, schema=answer_schema(spec), max_tokens=spec.max_tokens)
    except (LLMUnavailable, LLMBadResponse) as exc:
        code = _failure_code(exc)
        if code in STOPPING:
            run.stopped = code
        elif code == "PANEL_UNAVAILABLE":
            run.down[key] = code
        return PersonaNote(spec.name, key, False, None, code, str(exc)[:300])
    served = result.served_by or key
    price = runtime.rules.models.models[served]
    used_in, used_out = result.input_tokens, result.output_tokens
    cost = call_cost(price, input_tokens=used_in, output_tokens=used_out)
    run.ledger.append(_ledger(spec, item, text, served, price.backend, cost, result, run))
    latency = time.monotonic() - started
    try:
        answer = parse_answer(spec, result.text, result.refusal)
    except InvalidAnswer as exc:
        bad = PersonaNote(spec.name, served, False, None, exc.code, str(exc))
        return replace(
            bad, input_tokens=used_in, output_tokens=used_out, cost_usd=cost, latency_s=latency
        )
    note = PersonaNote(spec.name, served, True, answer, None, "")
    return replace(
        note, input_tokens=used_in, output_tokens=used_out, cost_usd=cost, latency_s=latency
    )


def _failure_code(exc: Exception) -> str:
    if isinstance(exc, BudgetDeferred):
        return "PANEL_BUDGET_EXHAUSTED"
    if isinstance(exc.__cause__, TimeoutError):  # no throttle slot: nothing was sent
        return "PANEL_THROTTLED"
    if isinstance(exc, LLMBadResponse):
        return "PANEL_BAD_RESPONSE"
    return "PANEL_UNAVAILABLE"


def _ledger(
    spec: PersonaSpec,
    item: InboxItem,
    text: str,
    served: str,
    backend: str,
    cost: float,
    result: ChatResult,
    run: PanelRun,
) -> dict[str, Any]:
    """The call's LEDGER row; its id is derived from item, text, persona and model, so a
    replayed answer is booked once."""
    content = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return ledger_row(
        call_id=stable_id([item.item_id, content, spec.name, served, spec.prompt], "call"),
        workflow=WORKFLOW,
        run_id=run.run_id,
        chunk_id=f"panel-{run.run_id}",
        task=spec.task,
        model=served,
        backend=backend,
        pattern=f"panel/{spec.name}",
        n_items=1,
        cost_usd=cost,
        now=run.now,
        item_id=item.source_id,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
    )


def _apply(
    runtime: Runtime,
    item: InboxItem,
    notes: list[PersonaNote],
    text: str,
    structured_serious: bool,
    run: PanelRun,
) -> Reviewed:
    """The policy's answer to the panel's notes, applied to the item (priority, evidence)."""
    panel = runtime.rules.personas
    facts = panel_facts(
        notes,
        item_kind=item.kind,
        structured_serious=structured_serious,
        injection=injection_suspected(text, panel.injection_markers),
        recall_validated=panel_validated(runtime),
    )
    rules = runtime.rules.policies.rules
    lower, close = (decide(facts, rules, stage=s) for s in ("panel", "panel_close"))
    effects = {r.code: r.effect for r in (*lower.reasons, *close.reasons)}
    action = choose_action(
        facts,
        may_close=permits(close.codes, effects, CLOSE_CODE),
        may_lower=permits(lower.codes, effects, LOWER_CODE),
    )
    priority = item.priority
    if action == "lower":
        priority = max(item.priority, panel.priority.lowered)
    elif action == "human_first":
        priority = min(item.priority, panel.priority.raised)
    codes = [n.problem for n in notes if n.problem] + list(lower.codes)
    if action == "close":
        codes += list(close.codes)
    cost = sum(n.cost_usd for n in notes)
    evidence = {
        "asked": True,
        "action": action,
        "reason_codes": codes,
        "priority_before": item.priority,
        "suggested": suggested_verdict(notes, item.kind) if action in ("lower", "close") else None,
        "cost_usd": cost,
        "notes": [n.evidence() for n in notes],
    }
    run.reviews.append(_review_row(item, action, codes, notes, priority, cost, run))
    changed = replace(item, priority=priority, evidence={**item.evidence, "panel": evidence})
    return Reviewed(changed, close=action == "close")


def _review_row(
    item: InboxItem,
    action: str,
    codes: list[str],
    notes: list[PersonaNote],
    priority: int,
    cost: float,
    run: PanelRun,
) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "source_id": item.source_id,
        "kind": item.kind,
        "action": action,
        "reason_codes": codes,
        "personas": len(notes),
        "personas_answered": sum(n.valid for n in notes),
        "priority_before": item.priority,
        "priority_after": priority,
        "cost_usd": cost,
        "run_id": run.run_id,
        "reviewed_at": run.now,
        "day": run.now.date().isoformat(),
    }


def panel_model_id(runtime: Runtime) -> str:
    """What a panel validation record names: every persona's model, in order."""
    tasks = runtime.rules.models.tasks
    return "persona-panel:" + ",".join(tasks[p.task] for p in _personas(runtime))


def panel_validated(runtime: Runtime) -> bool:
    """Whether the panel (these models, these prompts) was measured at the target recall."""
    ladder = runtime.settings.ladder
    return recall_validated(
        read_json(runtime.settings.panel.recall_file),
        model=panel_model_id(runtime),
        prompt_sha256=prompts_sha256(_personas(runtime)),
        target_recall=ladder.target_recall,
        min_positives=ladder.min_validation_positives,
    )


def book(runtime: Runtime, run: PanelRun) -> None:
    """The panel's ledger rows and review rows, each keyed so a re-run books nothing twice."""
    stem = f"panel-{run.run_id}"
    if run.ledger:
        runtime.lake.append_new(
            "ledger",
            ledger_frame(run.ledger),
            LEDGER,
            keys=["call_id"],
            partition_by="day",
            stem=stem,
        )
    if run.reviews:
        runtime.lake.append_new(
            "panel_reviews",
            review_frame(run.reviews),
            PANEL_REVIEW,
            keys=["item_id"],
            partition_by="day",
            stem=stem,
        )


def review_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """``rows`` as a frame of exactly the PANEL_REVIEW schema."""
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=PANEL_REVIEW))  # type: ignore[return-value]
