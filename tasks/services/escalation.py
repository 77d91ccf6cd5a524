"""The escalation lane: the large model's structured verdict on the scan's escalations.

Verdicts are asked through the Supervisor (budget, throttle) and the paid-call journal, so
every answer is kept the moment it returns and a run killed mid-chunk replays what it paid
for; the ledger (keyed by call) is written before decisions and cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa

from models.llm import LLM
from tasks.core.audit_entries import decision_entries
from tasks.core.batches import chunk_id, stable_id
from tasks.core.judge import Judgement, judge
from tasks.core.ladder import recall_validated
from tasks.core.ledger import ledger_frame, ledger_row
from tasks.core.pricing import call_cost
from tasks.core.revisions import current_versions
from tasks.core.verdict import PROMPT_SHA256, PROMPT_VERSION, decision_of, product_among_suspects
from tasks.io.reports import read_json
from tasks.policy.engine import decide
from tasks.rules import ModelPrice, PolicyRule
from tasks.schemas import CASE, DECISION, LEDGER
from tasks.services.audit import anchor
from tasks.services.revisions import withdrawn_ids
from tasks.services.runtime import VERDICT_TASK, Runtime
from tasks.services.supervisor import SupervisedLLM

WORKFLOW = "escalation-lane"
PATH = "large"
LANE_KEYS = ["item_id", "content_hash", "workflow"]


def pending_escalations(runtime: Runtime, limit: int | None) -> tuple[pl.DataFrame, int]:
    """Escalations the lane has not decided yet (hot first, then by id), and how many it has."""
    queue = runtime.lake.read("escalations")
    if queue.is_empty():
        return queue, 0
    decided = runtime.lake.read("decisions", columns=LANE_KEYS)
    done = decided.filter(pl.col("workflow") == WORKFLOW).drop("workflow").unique()
    pending = queue.join(done, on=["item_id", "content_hash"], how="anti") if done.height else queue
    pending = _still_current(runtime, pending)  # no large-model call for a withdrawn or old version
    pending = pending.unique(["item_id", "content_hash"], keep="first").sort(
        pl.col("route") != "hot", "item_id"
    )
    already = queue.height - pending.height
    return (pending.head(limit) if limit else pending), already


def _still_current(runtime: Runtime, pending: pl.DataFrame) -> pl.DataFrame:
    """``pending`` without withdrawn citations and without versions a revision superseded.

    An escalation with no decision yet (a scan killed between the two writes) stays.
    """
    if pending.is_empty():
        return pending
    keys = ["item_id", "content_hash"]
    withdrawn = withdrawn_ids(runtime)
    kept = pending.filter(~pl.col("item_id").is_in(withdrawn.implode()))
    decided = runtime.lake.read("decisions", columns=[*keys, "decided_at"])
    if decided.is_empty():
        return kept
    newest = current_versions(decided).select(keys).unique()
    superseded = kept.join(newest.select("item_id"), on="item_id", how="semi").join(
        newest, on=keys, how="anti"
    )
    return kept.join(superseded.select(keys), on=keys, how="anti")


@dataclass(frozen=True)
class LaneChunkResult:
    chunk_id: str
    items: int
    outcomes: dict[str, int]
    decisions: dict[str, int]
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cases_written: int
    replayed_calls: int = 0


@dataclass(frozen=True)
class Asked:
    """What the model said about every item of a chunk, and what it cost."""

    judgements: list[Judgement]
    ledger: list[dict[str, Any]]
    costs: dict[str, float]
    replayed: int


def judge_chunk(
    runtime: Runtime, chunk: pl.DataFrame, run_id: str, now: datetime
) -> LaneChunkResult:
    """Verdicts for one chunk, then ledger, reasons of record, cases and decisions."""
    cid, lake = chunk_id(chunk), runtime.lake
    model = SupervisedLLM(runtime.llm, runtime, workflow=WORKFLOW)
    asked = ask_chunk(runtime, model, chunk, run_id, cid, now)
    if asked.ledger:
        lake.append_new(
            "ledger",
            ledger_frame(asked.ledger),
            LEDGER,
            keys=["call_id"],
            partition_by="day",
            stem=cid,
        )
    decided, cases = decision_rows(
        chunk,
        asked,
        model.name,
        Stamp(run_id, cid, now),
        rules=runtime.rules.policies.rules,
        validated=large_model_validated(runtime, model.name),
    )
    # the reason of record goes to the audit trail first: no decision exists without one
    if decided.height:
        runtime.audit.append(decision_entries(decided), now=now)
    cases_written = lake.append_new(
        "cases", cases, CASE, keys=LANE_KEYS, partition_by="pub_month", stem=cid
    )
    lake.append_new(
        "decisions", decided, DECISION, keys=LANE_KEYS, partition_by="pub_month", stem=cid
    )
    anchor(runtime, workflow=WORKFLOW, run_id=run_id, now=now)
    return LaneChunkResult(
        cid,
        chunk.height,
        dict(Counter(j.outcome for j in asked.judgements)),
        dict(Counter(decided["decision"].to_list())) if decided.height else {},
        len(asked.ledger),
        sum(j.input_tokens for j in asked.judgements),
        sum(j.output_tokens for j in asked.judgements),
        sum(asked.costs.values()),
        cases_written,
        asked.replayed,
    )


def ask_chunk(
    runtime: Runtime,
    model: SupervisedLLM,
    chunk: pl.DataFrame,
    run_id: str,
    cid: str,
    now: datetime,
) -> Asked:
    """Each item asked at its own urgency; one priced ledger row per answered call."""
    judgements, ledger, costs, replayed = [], [], {}, 0
    for row in chunk.iter_rows(named=True):
        asked = model.for_item(urgent=row["route"] == "hot")
        judged = judge_row(asked, row, runtime.settings.llm.max_tokens)
        judgements.append(judged)
        replayed += asked.replayed
        calls = verdict_ledger_rows(
            row,
            judged,
            model.prices,
            workflow=WORKFLOW,
            pattern=f"escalation/{PATH}",
            attempt_tag="attempt",
            stamp=Stamp(run_id, cid, now),
        )
        ledger += calls
        costs[row["item_id"]] = sum(c["cost_usd"] for c in calls)
    return Asked(judgements, ledger, costs, replayed)


def judge_row(llm: LLM, row: Mapping[str, Any], max_tokens: int) -> Judgement:
    """The large model's judgement of one lake row (item_id, title, abstract, products)."""
    return judge(
        llm,
        item_id=row["item_id"],
        title=row["title"],
        abstract=row["abstract"],
        products=row["products"] or [],
        max_tokens=max_tokens,
    )


@dataclass(frozen=True)
class Stamp:
    """Which run and chunk wrote a row, and when."""

    run_id: str
    chunk: str
    now: datetime


def verdict_ledger_rows(
    row: Mapping[str, Any],
    judged: Judgement,
    prices: Mapping[str, ModelPrice],
    *,
    workflow: str,
    pattern: str,
    attempt_tag: str,
    stamp: Stamp,
) -> list[dict[str, Any]]:
    """One priced LEDGER row per answered call of ``judged``.

    The call id is derived from the item, its content, the model, the attempt (tagged per
    workflow) and the prompt version, so a replayed call is booked once.
    """
    key = f"{row['item_id']}:{row['content_hash']}"
    rows: list[dict[str, Any]] = []
    for call in judged.calls:
        price = prices[call.served_by]
        attempt = f"{attempt_tag}-{call.attempt}"
        rows.append(
            ledger_row(
                call_id=stable_id([key, call.served_by, attempt, PROMPT_VERSION], "call"),
                workflow=workflow,
                run_id=stamp.run_id,
                chunk_id=stamp.chunk,
                task=VERDICT_TASK,
                model=call.served_by,
                backend=price.backend,
                pattern=pattern,
                n_items=1,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=call_cost(
                    price, input_tokens=call.input_tokens, output_tokens=call.output_tokens
                ),
                now=stamp.now,
                item_id=str(row["item_id"]),
            )
        )
    return rows


def lane_decision(
    judged: Judgement, products: list[str], *, rules: Sequence[PolicyRule], validated: bool
) -> tuple[str, str]:
    """(decision, reason of record) for an answered item, through the supervisor's policy.

    A rejected answer goes to a human. An adverse event becomes a case candidate (a human
    processes every case). A "no adverse event" closes the item only when policy allows it
    without review: the model's recall must be validated (`ladder-eval`) and nothing it said
    may look serious; otherwise a human decides. Every matching rule is in the reason.
    """
    if judged.verdict is None:
        policy = decide({"verdict_valid": False}, rules, workflow=WORKFLOW)
        why = "; ".join(judged.failures)[:400]
        decision, reason = "human_review", f"large-model answer rejected twice: {why}"
    else:
        v = judged.verdict
        facts = {
            "verdict_valid": True,
            "adverse_event": v.is_adverse_drug_event,
            "serious": any(s != "none_stated" for s in v.seriousness),
            "severity": None if v.is_adverse_drug_event else 0,  # no event: nothing to grade
            "large_recall_validated": validated,
        }
        policy = decide(facts, rules, workflow=WORKFLOW)
        decision, reason = decision_of(v, products)
        if decision == "closed_negative" and not policy.auto_accept:
            decision = "human_review"
            reason = "large model: no adverse drug event, but policy needs a human to close it"
    return decision, f"{reason} [policy: {', '.join(policy.codes)}]"


def large_model_validated(runtime: Runtime, model_key: str) -> bool:
    """Whether `ladder-eval` measured this model (and prompt) at the target recall."""
    ladder = runtime.settings.ladder
    return recall_validated(
        read_json(ladder.large_recall_dir / f"{model_key}.json"),
        model=model_key,
        prompt_sha256=PROMPT_SHA256,
        target_recall=ladder.target_recall,
        min_positives=ladder.min_validation_positives,
    )


def decision_rows(
    chunk: pl.DataFrame,
    asked: Asked,
    model_key: str,
    stamp: Stamp,
    *,
    rules: Sequence[PolicyRule],
    validated: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decision rows of every answered item and case rows of its case candidates."""
    decisions, cases = [], []
    for item, judged in zip(chunk.iter_rows(named=True), asked.judgements, strict=True):
        if judged.outcome == "deferred":
            continue  # stays in lake/escalations; the next run asks again
        products = item["products"] or []
        served = judged.calls[-1].served_by if judged.calls else model_key
        decision, reason = lane_decision(judged, products, rules=rules, validated=validated)
        decisions.append(
            {
                **{k: item[k] for k in ("item_id", "content_hash", "pub_date", "pub_month")},
                "workflow": WORKFLOW,
                "products": products,
                "route": item["route"],
                "path": PATH,
                "probability": item["probability"],
                "decision": decision,
                "reason": reason,
                "model": served,
                "cost_usd": asked.costs.get(item["item_id"], 0.0),
                "run_id": stamp.run_id,
                "chunk_id": stamp.chunk,
                "decided_at": stamp.now,
                "first_seen_at": item.get("first_seen_at"),
            }
        )
        if judged.verdict is not None and decision == "case_candidate":
            cases.append(case_row(item, judged, products, served, stamp))
    return _frame(decisions, DECISION), _frame(cases, CASE)


def case_row(
    item: Mapping[str, Any], judged: Judgement, products: list[str], served: str, stamp: Stamp
) -> dict[str, Any]:
    """The case draft of a case candidate: what the model found, for a human to process."""
    v = judged.verdict
    assert v is not None
    return {
        "item_id": item["item_id"],
        "content_hash": item["content_hash"],
        "workflow": WORKFLOW,
        "pub_month": item["pub_month"],
        "products": products,
        "suspect_drugs": list(v.suspect_drugs),
        "reactions": list(v.reactions),
        "seriousness": list(v.seriousness),
        "product_among_suspects": product_among_suspects(v, products),
        "summary": v.summary,
        "model": served,
        "run_id": stamp.run_id,
        "created_at": stamp.now,
    }


def _frame(rows: list[dict[str, object]], schema: pa.Schema) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))  # type: ignore[return-value]


def prune_journal(runtime: Runtime, now: datetime) -> int:
    """Drop paid answers older than ``llm.journal_keep_days``; how many went."""
    keep = timedelta(days=runtime.settings.llm.journal_keep_days)
    return runtime.journal.prune(now, keep=keep)
