"""Prefect tasks of calibration and the ladder evaluation: small scores, large verdicts."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.batches import chunk_id
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_VERSION
from tasks.rules import load_models
from tasks.schemas import EVAL_VERDICT, LEDGER
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.embedding import SCREEN_TASK, texts_of
from tasks.steps.paid_calls import SupervisedLLM, judge_row, ledger_rows
from tasks.steps.training import embed_split


@task(name="score-split", cache_policy=NO_CACHE)
def small_scores(
    rows: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """``rows`` with the small model's probability and its catalog cost per item."""
    vectors = embed_split(rows, settings, workflow=workflow, run_id=run_id, now=now)
    probs = resources.scorer(settings).probabilities(vectors) if rows.height else np.zeros(0)
    price = load_models(settings).models[load_models(settings).tasks[SCREEN_TASK]]
    tokens = resources.embedder().count_tokens(texts_of(rows))
    return rows.with_columns(
        pl.Series("probability", probs, dtype=pl.Float64),
        pl.Series("tokens", tokens, dtype=pl.Int64),
        pl.Series(
            "small_usd",
            [call_cost(price, input_tokens=t) for t in tokens],
            dtype=pl.Float64,
        ),
    )


@task(name="large-verdicts", cache_policy=NO_CACHE)
def large_verdicts(
    sample: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> pl.DataFrame:
    """The large model's verdict per item; stored ones are reused, new calls go to the ledger.

    Returns item_id, outcome (verdict | human_review), large_says, input/output tokens.
    """
    lake, logger = resources.lake(settings), get_run_logger()
    model = SupervisedLLM(resources.llm(settings), settings, workflow=workflow)
    tag = f"{model.name}@{PROMPT_VERSION}"  # verdicts of another prompt are not reused
    stored = lake.read("eval_verdicts")
    if not stored.is_empty():
        stored = stored.filter(pl.col("model") == tag)
    done = set(stored["item_id"].to_list()) if not stored.is_empty() else set()
    todo = sample.filter(~pl.col("item_id").is_in(list(done)))
    for start in range(0, todo.height, 16):
        part = todo.slice(start, 16)
        cid, ledger, verdicts = chunk_id(part), [], []
        for row in part.iter_rows(named=True):
            judged = judge_row(model, row, settings)
            if judged.outcome == "deferred":
                raise RuntimeError(f"backend unavailable: {judged.failures[-1]}")
            ledger += ledger_rows(
                row,
                judged,
                model.prices,
                workflow=workflow,
                pattern="eval/large",
                attempt_tag="eval",
                run_id=run_id,
                chunk=cid,
                now=now,
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
                    "created_at": now,
                }
            )
        if ledger:
            lake.append_new(
                "ledger",
                pl.DataFrame(ledger),
                LEDGER,
                keys=["call_id"],
                partition_by="day",
                stem=cid,
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
        logger.info("large verdicts: %d/%d new", start + part.height, todo.height)
    out = lake.read("eval_verdicts").filter(pl.col("model") == tag)
    return sample.select("item_id").join(out.drop("content_hash"), on="item_id", how="left")
