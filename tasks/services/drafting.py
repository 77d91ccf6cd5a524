"""The drafting lane: a periodic safety report's "literature and signals" section, per product
and month, composed by the synthesis model, grounding-checked, and sent to a reviewer.

Per period (a calendar month) and product:

1. evidence, numbered E1..En: the materialised literature and signal summaries
   (``summaries/product_knowledge``), FAERS disproportionality (PRR / ROR with 95% intervals
   and counts) and the literature cases a reviewer confirmed in the review inbox that month;
2. a draft from the model of ``configs/models.yaml`` task ``draft-periodic-summary``, asked
   through ``SupervisedLLM`` as workflow ``draft-periodic-summary`` (journal replay, budget,
   throttle, settle) and booked in the ledger with the draft's id; every sentence cites evidence
   ids, and the grounding check (``tasks/core/grounding.py``) removes the ones their items do
   not support. A backend that is down, a spent budget, a full throttle or an unusable answer
   gives the template draft instead (every sentence one evidence item, cited), which says so;
3. stored: a row of ``drafts/periodic_summary`` (keyed by draft id = product:period:version,
   the version a hash of the evidence and composer, so a re-run adds nothing and pays nothing
   twice), the Markdown under PHARMALANE_HOME (0600), and an inbox item of kind ``draft``
   (accepted / needs_changes / rejected by a reviewer, chained like every resolution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from models.llm import LLMBadResponse, LLMUnavailable
from tasks.core.batches import stable_id
from tasks.core.drafting import (
    INSTRUCTION,
    PASSAGE_CHARS,
    Draft,
    EvidenceItem,
    evidence_items,
    evidence_version,
    month_bounds,
    render_markdown,
    request_for,
    template_sentences,
)
from tasks.core.grounding import GroundingBounds, check_grounding, numbered_messages
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.pricing import call_cost
from tasks.errors import DataContractError
from tasks.io.private_files import write_private
from tasks.schemas import LEDGER, PERIODIC_DRAFT, InboxItem
from tasks.services.composer import GroundedText, grounded_completion
from tasks.services.knowledge import SUMMARIES
from tasks.services.runtime import Runtime
from tasks.services.supervisor import BudgetDeferred, SupervisedLLM

WORKFLOW = TASK = "draft-periodic-summary"
DRAFTS = "drafts/periodic_summary"


@dataclass
class DraftRun:
    """One run's drafting: what it made and booked."""

    run_id: str
    now: datetime
    ledger: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)


@dataclass(frozen=True)
class PeriodResult:
    """What one period's drafting did (the flow's summary sums these)."""

    period: str
    drafts: int
    new_drafts: int
    templates: int
    removed_sentences: int
    cost_usd: float
    inbox_items: list[str]
    markdown: list[str]  # paths of the Markdown files
    texts: list[str]  # the Markdown of each draft (the run's artifact)


def checked_products(runtime: Runtime, products: Sequence[str] | None) -> list[str]:
    """The products to draft (default: every watched product), lower case, sorted.

    Raises:
        DataContractError: a product is not watched (field ``products``).
    """
    watched = runtime.rules.watched
    if not products:
        return watched
    asked = sorted({p.strip().lower() for p in products})
    unknown = [p for p in asked if p not in watched]
    if unknown:
        raise DataContractError(
            f"products {unknown} are not watched (configs/products.yaml: {watched})",
            field="products",
        )
    return asked


def confirmed_cases(runtime: Runtime, period: str) -> list[dict[str, Any]]:
    """Literature items a reviewer confirmed as ICSRs during ``period``, earliest first."""
    if not runtime.settings.inbox_db.exists():
        return []
    first, after = month_bounds(period)
    cases = []
    for item in runtime.inbox.items(status="resolved"):
        if item.kind != "literature" or item.outcome != "confirmed_icsr":
            continue
        if item.resolved_at is None or not first <= item.resolved_at.date() < after:
            continue
        case = item.evidence.get("case") or {}
        cases.append(
            {
                "item_id": item.item_id,
                "reference": f"PMID:{item.source_id}",
                "confirmed_on": item.resolved_at.date().isoformat(),
                "products": list(item.evidence.get("products") or []),
                "suspect_drugs": list(case.get("suspect_drugs") or []),
                "reactions": list(case.get("reactions") or []),
                "seriousness": list(case.get("seriousness") or []),
                "summary": case.get("summary") or "",
            }
        )
    return sorted(cases, key=lambda c: (c["confirmed_on"], c["item_id"]))


def draft_period(
    runtime: Runtime,
    period: str,
    products: Sequence[str],
    signals: pl.DataFrame,
    run: DraftRun,
) -> PeriodResult:
    """Every product's draft for ``period``, stored, booked and sent to the inbox."""
    summaries = runtime.lake.read(SUMMARIES)
    cases = confirmed_cases(runtime, period)
    start = len(run.drafts)
    for product in products:
        items = product_evidence(runtime, product, summaries, signals, cases)
        run.drafts.append(compose(runtime, product, period, items, run))
    made = run.drafts[start:]
    new = store(runtime, made, run)
    items_added = submit(runtime, made, run.now)
    paths = [str(write_markdown(runtime, d)) for d in made]
    return PeriodResult(
        period=period,
        drafts=len(made),
        new_drafts=len(new),
        templates=sum(d.composer == "template" for d in made),
        removed_sentences=sum(len(d.removed) for d in made),
        cost_usd=sum(r["cost_usd"] for r in new),
        inbox_items=items_added,
        markdown=paths,
        texts=[render_markdown(d) for d in made],
    )


def product_evidence(
    runtime: Runtime,
    product: str,
    summaries: pl.DataFrame,
    signals: pl.DataFrame,
    cases: Sequence[dict[str, Any]],
) -> list[EvidenceItem]:
    """One product's numbered evidence (its summaries, FAERS rows and confirmed cases)."""
    settings = runtime.settings.drafting
    mine = (
        summaries.filter(pl.col("product") == product).select("product", "kind", "text")
        if not summaries.is_empty()
        else pl.DataFrame(schema={"product": pl.String, "kind": pl.String, "text": pl.String})
    )
    own = [c for c in cases if product in c["products"]][: settings.max_cases]
    return evidence_items(product, mine, signals, own, faers_top_n=settings.faers_top_n)


def compose(
    runtime: Runtime, product: str, period: str, items: list[EvidenceItem], run: DraftRun
) -> Draft:
    """The model's draft, grounding-checked; the template draft when the model cannot answer."""
    if not items:
        return _template(runtime, product, period, items, "no evidence for this product")
    key = runtime.rules.models.tasks[TASK]
    settings = runtime.settings.drafting
    model = SupervisedLLM(
        runtime.model(key),
        runtime,
        workflow=WORKFLOW,
        urgent=False,
        throttle_timeout_s=settings.throttle_wait_s,
    )
    evidence = {i.id: i.text for i in items}
    messages = numbered_messages(
        INSTRUCTION, request_for(product, period), list(evidence.values()), max_chars=PASSAGE_CHARS
    )
    try:
        done = grounded_completion(
            model,
            [{"role": m["role"], "content": m["content"]} for m in messages],
            evidence,
            runtime.embedder.embed,
            _bounds(runtime),
            max_tokens=settings.max_tokens,
        )
    except (LLMUnavailable, LLMBadResponse) as exc:
        return _template(runtime, product, period, items, f"{_failure(exc)}: {str(exc)[:200]}")
    if done.nothing_found or not done.grounding.kept:
        why = "DRAFT_NOTHING_SUPPORTED: no sentence of the model's draft is supported"
        draft = _template(runtime, product, period, items, why, tag=f"template-after:{key}")
        draft = replace(draft, model_removed=done.grounding.sentences)
    else:
        removed = len(done.grounding.sentences) - len(done.grounding.kept)
        note = f"{removed} sentence(s) the cited evidence does not support were removed."
        version = evidence_version(items, f"model:{key}")
        served = done.result.served_by or key
        draft = Draft(product, period, version, "model", served, done.grounding, items, note)
    run.rows.append(_row(draft, run, _spent(runtime, draft, key, done, run)))
    return draft


def _bounds(runtime: Runtime) -> GroundingBounds:
    """The grounding bounds ``ask`` uses (knowledge.grounding): one bar for every writer."""
    grounding = runtime.settings.knowledge.grounding
    return GroundingBounds(grounding.min_lexical, grounding.min_embedding)


def _spent(
    runtime: Runtime, draft: Draft, key: str, done: GroundedText, run: DraftRun
) -> dict[str, Any]:
    """The call's cost, booked in the ledger under the draft's id (a template made after a
    useless answer still carries what the answer cost)."""
    result = done.result
    served = result.served_by or key
    price = runtime.rules.models.models[served]
    cost = call_cost(price, input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    run.ledger.append(_ledger(draft.draft_id, served, price.backend, cost, result, run))
    return {
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cost_usd": cost,
        "latency_s": done.latency_s,
    }


def _template(
    runtime: Runtime,
    product: str,
    period: str,
    items: list[EvidenceItem],
    why: str,
    *,
    tag: str = "template",
) -> Draft:
    """The deterministic draft, checked like any other; its note says why the model did not
    write it."""
    note = (
        f"Template draft: the synthesis model did not write this draft ({why}). Each "
        "sentence restates one evidence item."
    )
    evidence = {i.id: i.text for i in items}
    grounding = check_grounding(
        template_sentences(items), evidence, runtime.embedder.embed, _bounds(runtime)
    )
    version = evidence_version(items, tag)  # a template after a refused draft is another
    return Draft(product, period, version, "template", "", grounding, items, note)


def _failure(exc: Exception) -> str:
    if isinstance(exc, BudgetDeferred):
        return "DRAFT_BUDGET_EXHAUSTED"
    if isinstance(exc.__cause__, TimeoutError):
        return "DRAFT_THROTTLED"
    if isinstance(exc, LLMBadResponse):
        return "DRAFT_BAD_RESPONSE"
    return "DRAFT_MODEL_UNAVAILABLE"


def _ledger(
    draft_id: str, served: str, backend: str, cost: float, result: Any, run: DraftRun
) -> dict[str, Any]:
    """The call's ledger row, keyed by draft and model: a replayed answer is booked once."""
    return ledger_row(
        call_id=stable_id([draft_id, served], "call"),
        workflow=WORKFLOW,
        run_id=run.run_id,
        chunk_id=f"draft-{run.run_id}",
        task=TASK,
        model=served,
        backend=backend,
        pattern="draft/periodic-summary",
        n_items=1,
        cost_usd=cost,
        now=run.now,
        item_id=draft_id,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
    )


def _row(draft: Draft, run: DraftRun, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    spent = usage or {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "latency_s": 0.0}
    return {
        "draft_id": draft.draft_id,
        "product": draft.product,
        "period": draft.period,
        "version": draft.version,
        "composer": draft.composer,
        "model": draft.model,
        "note": draft.note,
        "markdown": render_markdown(draft),
        "evidence_ids": [i.id for i in draft.items],
        "evidence_sources": [i.source for i in draft.items],
        "sentences": len(draft.grounding.kept),
        "removed_sentences": len(draft.removed),
        "grounded_share": draft.grounding.grounded_share,
        **spent,
        "run_id": run.run_id,
        "created_at": run.now,
    }


def store(runtime: Runtime, drafts: Sequence[Draft], run: DraftRun) -> list[dict[str, Any]]:
    """Ledger rows and draft rows, each keyed, so a re-run books and stores nothing twice.

    Returns:
        The rows of the drafts stored now (none on a re-run with the same evidence).
    """
    rows = {r["draft_id"]: r for r in run.rows}
    mine = [rows.get(d.draft_id) or _row(d, run) for d in drafts]
    stem = f"drafts-{run.run_id}"
    lake = runtime.lake
    if run.ledger:
        ledger = ledger_frame(run.ledger)
        lake.append_new("ledger", ledger, LEDGER, keys=["call_id"], partition_by="day", stem=stem)
        run.ledger.clear()  # booked: the next period books only its own calls
    frame = pl.from_arrow(pa.Table.from_pylist(mine, schema=PERIODIC_DRAFT))
    assert isinstance(frame, pl.DataFrame)
    fresh = set(lake.unseen(DRAFTS, frame, keys=["draft_id"])["draft_id"].to_list())
    lake.append_new(
        DRAFTS, frame, PERIODIC_DRAFT, keys=["draft_id"], partition_by="period", stem=stem
    )
    return [r for r in mine if r["draft_id"] in fresh]


def write_markdown(runtime: Runtime, draft: Draft) -> Path:
    """The draft's Markdown under PHARMALANE_HOME (0600 in a 0700 folder), replaced whole."""
    folder = runtime.settings.drafts_dir / draft.period
    path = folder / f"{draft.product}-{draft.version}.md"
    return write_private(path, render_markdown(draft).encode("utf-8"))


def inbox_item(draft: Draft, now: datetime, review_days: int) -> InboxItem:
    """The review inbox's item for ``draft``: due ``review_days`` after it was made."""
    evidence = {
        "reference": {"draft_id": draft.draft_id, "period": draft.period},
        "product": draft.product,
        "products": [draft.product],
        "composer": draft.composer,
        "model": draft.model,
        "grounded_share": draft.grounding.grounded_share,
        "removed_sentences": len(draft.removed),
        "markdown": render_markdown(draft),
        "evidence_sources": {i.id: i.source for i in draft.items},
        "reason_codes": ["DRAFT_TEMPLATE" if draft.composer == "template" else "DRAFT_MODEL"],
    }
    return InboxItem(
        item_id=f"draft:{draft.draft_id}",
        kind="draft",
        source_id=draft.draft_id,
        source=WORKFLOW,
        reason="draft_for_review",
        day_zero=now.date(),
        clock_days=review_days,
        due_date=now.date() + timedelta(days=review_days),
        priority=4,
        evidence=evidence,
    )


def submit(runtime: Runtime, drafts: Sequence[Draft], now: datetime) -> list[str]:
    """Send ``drafts`` to the review inbox (keyed: a re-run adds nothing); chain the hand-over."""
    days = runtime.settings.drafting.review_days
    items = [inbox_item(d, now, days) for d in drafts]
    runtime.inbox.add(items, now=now)
    ids = [i.item_id for i in items]
    if ids:
        entry = {
            "key": f"drafts:{stable_id(sorted(ids), 'drafts')}",
            "kind": "draft_submitted",
            "workflow": WORKFLOW,
            "item_ids": ids,
            "composers": [d.composer for d in drafts],
            "reason_codes": ["DRAFT_FOR_REVIEW"],
            "at": now.isoformat(),
        }
        runtime.audit.append([entry], now=now)
    return ids
