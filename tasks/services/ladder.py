"""The model ladder's measurements: small-model scores and large-model verdicts, priced alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.core.batches import chunk_id
from tasks.core.ledger import ledger_frame
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_VERSION
from tasks.schemas import EVAL_VERDICT, LEDGER
from tasks.services.embedding import SCREEN_TASK, screen_texts
from tasks.services.escalation import Stamp, judge_row, verdict_ledger_rows
from tasks.services.runtime import Runtime
from tasks.services.scoring import probabilities
from tasks.services.supervisor import SupervisedLLM
from tasks.services.training import embed_split

VERDICTS_PER_PART = 16  # large verdicts checkpointed together


def small_scores(
    runtime: Runtime, rows: pl.DataFrame, *, workflow: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """``rows`` with the small model's probability and its catalog cost per item."""
    vectors = embed_split(runtime, rows, workflow=workflow, run_id=run_id, now=now)
    probs = probabilities(runtime, rows, vectors) if rows.height else np.zeros(0)
    catalog = runtime.rules.models
    price = catalog.models[catalog.tasks[SCREEN_TASK]]
    tokens = runtime.screen_embedder.count_tokens(screen_texts(runtime, rows))
    return rows.with_columns(
        pl.Series("probability", probs, dtype=pl.Float64),
        pl.Series("tokens", tokens, dtype=pl.Int64),
        pl.Series(
            "small_usd",
            [call_cost(price, input_tokens=t) for t in tokens],
            dtype=pl.Float64,
        ),
    )


def large_verdicts(
    runtime: Runtime,
    sample: pl.DataFrame,
    *,
    workflow: str,
    run_id: str,
    now: datetime,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> pl.DataFrame:
    """The large model's verdict per item; stored ones are reused, new calls go to the ledger.

    Returns item_id, outcome (verdict | human_review), large_says, input/output tokens.
    """
    model = SupervisedLLM(runtime.llm, runtime, workflow=workflow)
    tag = f"{model.name}@{PROMPT_VERSION}"  # verdicts of another prompt are not reused
    stored = runtime.lake.read("eval_verdicts")
    if not stored.is_empty():
        stored = stored.filter(pl.col("model") == tag)
    done = set(stored["item_id"].to_list()) if not stored.is_empty() else set()
    todo = sample.filter(~pl.col("item_id").is_in(list(done)))
    for start in range(0, todo.height, VERDICTS_PER_PART):
        part = todo.slice(start, VERDICTS_PER_PART)
        _judge_part(runtime, model, part, workflow, tag, Stamp(run_id, chunk_id(part), now))
        progress(start + part.height, todo.height)
    out = runtime.lake.read("eval_verdicts").filter(pl.col("model") == tag)
    return sample.select("item_id").join(out.drop("content_hash"), on="item_id", how="left")


def _judge_part(
    runtime: Runtime,
    model: SupervisedLLM,
    part: pl.DataFrame,
    workflow: str,
    tag: str,
    stamp: Stamp,
) -> None:
    """Judge one part, then write its ledger rows and verdicts (keyed, so idempotent)."""
    ledger: list[dict[str, Any]] = []
    verdicts = []
    for row in part.iter_rows(named=True):
        judged = judge_row(model, row, runtime.settings.llm.max_tokens)
        if judged.outcome == "deferred":
            raise RuntimeError(f"backend unavailable: {judged.failures[-1]}")
        ledger += verdict_ledger_rows(
            row,
            judged,
            model.prices,
            workflow=workflow,
            pattern="eval/large",
            attempt_tag="eval",
            stamp=stamp,
        )
        v = judged.verdict
        verdicts.append(
            {
                "item_id": row["item_id"],
                "content_hash": row["content_hash"],
                "model": tag,
                "outcome": judged.outcome,
                "large_says": None if v is None else v.is_adverse_drug_event,
                "input_tokens": judged.input_tokens,
                "output_tokens": judged.output_tokens,
                "calls": len(judged.calls),
                "created_at": stamp.now,
            }
        )
    lake, cid = runtime.lake, stamp.chunk
    if ledger:
        lake.append_new(
            "ledger", ledger_frame(ledger), LEDGER, keys=["call_id"], partition_by="day", stem=cid
        )
    frame = pl.DataFrame(pa.Table.from_pylist(verdicts, schema=EVAL_VERDICT))
    lake.append_new(
        "eval_verdicts",
        frame,
        EVAL_VERDICT,
        keys=["item_id", "content_hash", "model"],
        partition_by="model",
        stem=cid,
    )
