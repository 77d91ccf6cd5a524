"""Screening, the Planner's lane for literature: embed, score, plan, write; the digest.

Per chunk: the small model (embedding + trained scorer) scores in-scope items, the planner
picks tool / small / escalate per item, and decisions, escalations and their reasons of
record are written. Order matters for pre-emption: the ledger row is written before the model
runs and the vectors are stored before decisions, so a run killed anywhere resumes without
paying twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from tasks.core.audit_entries import decision_entries
from tasks.core.batches import chunk_id
from tasks.core.digest import latest_outcome_per_item, product_digest
from tasks.io.process_memory import release_free_memory
from tasks.policy.planner import plan, with_evidence_reason
from tasks.schemas import DECISION, ESCALATION, PRODUCT_DIGEST
from tasks.services.audit import anchor
from tasks.services.embedding import Batch, Embedded, embed_paying_once, matrix
from tasks.services.revisions import current_decisions
from tasks.services.runtime import Runtime
from tasks.services.scoring import item_evidence, scorer_features

WORKFLOW = "nightly-literature-scan"


@dataclass(frozen=True)
class ChunkResult:
    chunk_id: str
    items: int
    embedded: int
    reused_vectors: int
    cost_usd: float
    decisions_written: int
    escalations_written: int
    deferred: int = 0


def screen(runtime: Runtime, chunk: pl.DataFrame, run_id: str, now: datetime) -> ChunkResult:
    """Embed what needs the model (reusing vectors already paid for), score, plan, write."""
    cid = chunk_id(chunk)
    in_scope = chunk.filter(pl.col("products").list.len() > 0)
    paid = embed_paying_once(
        runtime, in_scope, Batch(WORKFLOW, run_id, cid, now, pattern="scan/small")
    )
    decided = planned(runtime, chunk, score(runtime, in_scope, paid), paid).with_columns(
        pl.lit(run_id).alias("run_id"),
        pl.lit(cid).alias("chunk_id"),
        pl.lit(now).alias("decided_at"),
        pl.lit(now).alias("escalated_at"),
    )
    written_d, written_e = write(runtime, decided, cid, run_id, now)
    release_free_memory()  # else the heap keeps every chunk's high-water mark, see the module
    return ChunkResult(
        cid,
        chunk.height,
        paid.embedded,
        in_scope.height - paid.embedded - len(paid.deferred),
        paid.cost_usd,
        written_d,
        written_e,
        len(paid.deferred),
    )


def score(runtime: Runtime, in_scope: pl.DataFrame, paid: Embedded) -> pl.DataFrame:
    """item_id, cost_usd and the scorer's probability of every in-scope item not deferred.

    Deferred items (budget spent) get no decision now: the next run picks them up.
    """
    priced = in_scope.select("item_id").with_columns(
        (paid.tokens * paid.usd_per_token).alias("cost_usd")
    )
    ready = priced.filter(~pl.col("item_id").is_in(list(paid.deferred)))
    ids = ready["item_id"].to_list()
    texts = in_scope.filter(~pl.col("item_id").is_in(list(paid.deferred)))  # ready's rows
    found = item_evidence(runtime, texts) if ids else []
    scorer = runtime.scorer()
    probabilities: Any = (
        scorer.probabilities(scorer_features(scorer, texts, matrix(paid, ids), found))
        if ids
        else []
    )
    return ready.with_columns(
        pl.Series("probability", probabilities, pl.Float64),
        pl.Series("evidence", [e.codes() for e in found], pl.List(pl.String)),
    )


def planned(
    runtime: Runtime, chunk: pl.DataFrame, scores: pl.DataFrame, paid: Embedded
) -> pl.DataFrame:
    """The planner's path and decision for every item of ``chunk`` that is not deferred."""
    decidable = chunk.filter(~pl.col("item_id").is_in(list(paid.deferred)))
    scored = decidable.join(scores, on="item_id", how="left").with_columns(
        pl.col("cost_usd").fill_null(0.0)
    )
    model = pl.when(pl.col("path") == "tool").then(None).otherwise(pl.lit(paid.model_key))
    return with_evidence_reason(plan(scored, runtime.thresholds().thresholds)).with_columns(
        pl.lit(WORKFLOW).alias("workflow"), model.alias("model")
    )


def write(
    runtime: Runtime, decided: pl.DataFrame, cid: str, run_id: str, now: datetime
) -> tuple[int, int]:
    """Escalations, reasons of record, decisions, then the audit anchor; (decisions, escal.)."""
    escalations = decided.filter(pl.col("path") == "escalate")
    keys, lake = ["item_id", "content_hash"], runtime.lake
    written_e = lake.append_new(
        "escalations", escalations, ESCALATION, keys=keys, partition_by="pub_month", stem=cid
    )
    # the reason of record goes to the audit trail first: no decision exists without one
    runtime.audit.append(decision_entries(decided), now=now)
    written_d = lake.append_new(
        "decisions", decided, DECISION, keys=keys, partition_by="pub_month", stem=cid
    )
    anchor(runtime, workflow=WORKFLOW, run_id=run_id, now=now)
    return written_d, written_e


def materialise_digest(runtime: Runtime, months: Sequence[str], now: datetime) -> int:
    """Rebuild the product digest of every month the run touched (whole months, so idempotent)."""
    if not months:
        return 0
    decisions = runtime.lake.read(
        "decisions", where="list_contains($2, pub_month)", params=[list(months)]
    )
    # current versions only: a superseded decision or a withdrawn citation is not counted
    decisions = current_decisions(runtime, decisions)
    digest = product_digest(
        latest_outcome_per_item(decisions),
        top_n=runtime.settings.scan.digest_top_n,
        refreshed_at=now,
    )
    if digest.is_empty():
        return 0
    runtime.lake.write(
        "summaries/product_digest", digest, PRODUCT_DIGEST, partition_by="pub_month", stem="digest"
    )
    return digest.height
