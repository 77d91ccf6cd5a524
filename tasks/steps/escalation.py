"""Prefect tasks of the escalation lane: ask the large model, write ledger, decisions, cases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.audit_entries import decision_entries
from tasks.core.batches import chunk_id
from tasks.core.judge import Judgement
from tasks.core.ladder import recall_validated
from tasks.core.verdict import PROMPT_SHA256, decision_of, product_among_suspects
from tasks.io.reports import read_json
from tasks.policy.engine import decide
from tasks.rules import PolicyRule, load_policies
from tasks.schemas import CASE, DECISION, LEDGER
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.audit import anchor
from tasks.steps.paid_calls import SupervisedLLM, judge_row, ledger_rows
from tasks.steps.retry import retry_transient_only

WORKFLOW = "escalation-lane"
PATH = "large"
LANE_KEYS = ["item_id", "content_hash", "workflow"]


@task(name="pending-escalations", cache_policy=NO_CACHE)
def pending_escalations(settings: Settings, limit: int | None) -> tuple[pl.DataFrame, int]:
    """Escalations the lane has not decided yet (hot first, then by id), and how many it has."""
    lake = resources.lake(settings)
    queue = lake.read("escalations")
    if queue.is_empty():
        return queue, 0
    decided = lake.read("decisions", columns=LANE_KEYS)
    done = decided.filter(pl.col("workflow") == WORKFLOW).drop("workflow").unique()
    pending = queue.join(done, on=["item_id", "content_hash"], how="anti") if done.height else queue
    pending = pending.unique(["item_id", "content_hash"], keep="first").sort(
        pl.col("route") != "hot", "item_id"
    )
    already = queue.height - pending.height
    return (pending.head(limit) if limit else pending), already


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


@task(
    name="judge-escalations",
    retries=1,
    retry_condition_fn=retry_transient_only,
    cache_policy=NO_CACHE,
)
def judge_chunk(
    chunk: pl.DataFrame, settings: Settings, run_id: str, now: datetime
) -> LaneChunkResult:
    """Verdicts for one chunk, asked through the supervisor and the paid-call journal.

    Every answer is in the journal the moment it returns, so a run killed mid-chunk replays
    what it paid for; the ledger (keyed by call) is written before decisions and cases.
    """
    cid, lake = chunk_id(chunk), resources.lake(settings)
    model = SupervisedLLM(resources.llm(settings), settings, workflow=WORKFLOW)
    judgements, replayed = [], 0
    ledger: list[dict[str, Any]] = []
    costs: dict[str, float] = {}
    for row in chunk.iter_rows(named=True):
        asked = model.for_item(urgent=row["route"] == "hot")
        judged = judge_row(asked, row, settings)
        judgements.append(judged)
        replayed += asked.replayed
        calls = ledger_rows(
            row,
            judged,
            model.prices,
            workflow=WORKFLOW,
            pattern=f"escalation/{PATH}",
            attempt_tag="attempt",
            run_id=run_id,
            chunk=cid,
            now=now,
        )
        ledger += calls
        costs[row["item_id"]] = sum(c["cost_usd"] for c in calls)
    if ledger:
        lake.append_new(
            "ledger", pl.DataFrame(ledger), LEDGER, keys=["call_id"], partition_by="day", stem=cid
        )
    decided, cases = _decision_rows(
        chunk,
        judgements,
        costs,
        model.name,
        run_id,
        cid,
        now,
        rules=load_policies(settings).rules,
        validated=large_model_validated(settings, model.name),
    )
    # the reason of record goes to the audit trail first: no decision exists without one
    if decided.height:
        resources.audit(settings).append(decision_entries(decided), now=now)
    cases_written = lake.append_new(
        "cases", cases, CASE, keys=LANE_KEYS, partition_by="pub_month", stem=cid
    )
    lake.append_new(
        "decisions", decided, DECISION, keys=LANE_KEYS, partition_by="pub_month", stem=cid
    )
    anchor(settings, workflow=WORKFLOW, run_id=run_id, now=now)
    outcomes = Counter(j.outcome for j in judgements)
    get_run_logger().info(
        "chunk %s: %d items, outcomes %s, %d calls (%d replayed from the journal)",
        cid,
        chunk.height,
        dict(outcomes),
        len(ledger),
        replayed,
    )
    return LaneChunkResult(
        cid,
        chunk.height,
        dict(outcomes),
        dict(Counter(decided["decision"].to_list())) if decided.height else {},
        len(ledger),
        sum(j.input_tokens for j in judgements),
        sum(j.output_tokens for j in judgements),
        sum(costs.values()),
        cases_written,
        replayed,
    )


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


def large_model_validated(settings: Settings, model_key: str) -> bool:
    """Whether `ladder-eval` measured this model (and prompt) at the target recall."""
    return recall_validated(
        read_json(settings.ladder.large_recall_dir / f"{model_key}.json"),
        model=model_key,
        prompt_sha256=PROMPT_SHA256,
        target_recall=settings.ladder.target_recall,
        min_positives=settings.ladder.min_validation_positives,
    )


def _decision_rows(
    chunk: pl.DataFrame,
    judgements: list[Judgement],
    costs: dict[str, float],
    model_key: str,
    run_id: str,
    cid: str,
    now: datetime,
    *,
    rules: Sequence[PolicyRule],
    validated: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    decisions, cases = [], []
    for item, judged in zip(chunk.iter_rows(named=True), judgements, strict=True):
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
                "cost_usd": costs.get(item["item_id"], 0.0),
                "run_id": run_id,
                "chunk_id": cid,
                "decided_at": now,
            }
        )
        if judged.verdict is not None and decision == "case_candidate":
            v = judged.verdict
            cases.append(
                {
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
                    "run_id": run_id,
                    "created_at": now,
                }
            )
    return _frame(decisions, DECISION), _frame(cases, CASE)


def _frame(rows: list[dict[str, object]], schema: pa.Schema) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))  # type: ignore[return-value]
