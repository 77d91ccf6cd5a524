"""Flow `calibrate-ladder`: choose the small model's escalation threshold for a target recall.

On the calibration split: the small model's probabilities (vectors reused), then the lowest
expected-cost ``low`` whose recall on positives meets ``ladder.target_recall``, given the
large model's price (``ladder.price_model``). The choice and its whole curve are stored.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.runs import intake, run_id
from tasks.core.ladder import choose_cascade
from tasks.core.pricing import call_cost
from tasks.io.reports import write_json
from tasks.services.runtime import Runtime, utcnow
from tasks.settings import load_settings
from tasks.steps.ladder import small_scores

WORKFLOW = "calibrate-ladder"


class CalibrationSummary(BaseModel):
    choice_file: str
    items: int
    positives: int
    in_scope: int
    low: float
    high: float
    small_recall_at_low: float
    escalated_share: float
    expected_usd_per_1k_items: float
    all_large_usd_per_1k_items: float
    cost_ratio: float


@flow(name="calibrate-ladder", log_prints=False)
def calibrate_ladder(limit: Annotated[int | None, Field(ge=1)] = None) -> CalibrationSummary:
    """Choose and store the cascade's ``low`` on the calibration split.

    Args:
        limit: only the first items (quick checks)
    """
    settings = load_settings()
    runtime, run, now = Runtime.for_settings(settings), run_id(), utcnow()
    rows = intake(settings, split="calibration", limit=limit).routed
    scored = small_scores(rows.sort("item_id"), settings, workflow=WORKFLOW, run_id=run, now=now)
    in_scope = (scored["products"].list.len() > 0).to_numpy()
    scope = scored.filter(pl.col("products").list.len() > 0)
    price = runtime.rules.models.models[settings.ladder.price_model]
    large_usd = call_cost(
        price,
        input_tokens=int(np.mean(scope["tokens"].to_numpy()))
        + settings.ladder.prompt_overhead_tokens,
        output_tokens=settings.ladder.output_tokens,
    )
    choice = choose_cascade(
        scored["probability"].to_numpy(),
        scored["label_ade"].to_numpy().astype(bool),
        in_scope,
        high=runtime.scorer().meta.threshold_high,
        target_recall=settings.ladder.target_recall,
        small_usd_per_item=float(np.mean(scope["small_usd"].to_numpy())),
        large_usd_per_item=large_usd,
        large_recall=settings.ladder.large_recall,
    )
    path = write_json(
        {
            **asdict(choice),
            "split": "calibration",
            "price_model": settings.ladder.price_model,
            "items": scored.height,
            "in_scope": int(in_scope.sum()),
            "positives": int(scored["label_ade"].sum()),
            "scorer_sha256": runtime.scorer().meta.weights_sha256,
            "created_at": now.isoformat(),
        },
        settings.ladder.choice_file,
    )
    get_run_logger().info("cascade low=%.5f share=%.3f", choice.low, choice.escalated_share)
    return CalibrationSummary(
        choice_file=str(path),
        items=scored.height,
        positives=int(scored["label_ade"].sum()),
        in_scope=int(np.sum(in_scope)),
        low=choice.low,
        high=choice.high,
        small_recall_at_low=choice.small_recall_at_low,
        escalated_share=choice.escalated_share,
        expected_usd_per_1k_items=choice.expected_usd_per_1k_items,
        all_large_usd_per_1k_items=choice.all_large_usd_per_1k_items,
        cost_ratio=choice.expected_usd_per_1k_items / choice.all_large_usd_per_1k_items,
    )
