"""Flow `ladder-eval`: all-small vs all-large vs the cascade on the test split, priced alike.

In-scope test items (a watched product mentioned) are scored by the small model; a seeded
sample of them is judged by the large model actually served (stored verdicts are reused, so a
re-run pays nothing). Every path is priced from configs/models.yaml: the small model at its
catalog price, the large path at ``ladder.price_model`` on the token counts measured from the
real responses. The cascade uses the thresholds chosen by `calibrate-ladder`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.core.ladder import compare_paths, sweep
from tasks.core.pricing import call_cost
from tasks.io.reports import cost_recall_png, read_json, write_json
from tasks.settings import REPO_ROOT, load_models, load_settings
from tasks.steps import resources
from tasks.steps.ladder import large_verdicts, small_scores
from tasks.steps.scan import load_citations, select, source_files, tools_and_route, utcnow, validate

WORKFLOW = "ladder-eval"


class LadderEvalParams(BaseModel):
    split: str = Field("test", pattern="^(test|calibration)$")
    sample: int | None = Field(None, ge=1, le=100_000, description="items the large model judges")
    out_dir: Path = Field(REPO_ROOT / "bench" / "results")


@flow(name="ladder-eval", log_prints=False)
def ladder_eval(params: LadderEvalParams | None = None) -> dict[str, Any]:
    params = params or LadderEvalParams()
    settings = load_settings()
    run_id, now = str(flow_run.get_id() or uuid.uuid4()), utcnow()
    citations, _ = load_citations(source_files(None), settings.cache_dir)
    checked = validate(select(citations, None, None, params.split, None), settings)
    rows = tools_and_route(checked.valid, settings)
    scope = rows.filter(pl.col("products").list.len() > 0).sort("item_id")
    size = min(params.sample or settings.ladder.sample, scope.height)
    sample = scope.sample(size, seed=settings.ladder.seed).sort("item_id")
    scored = small_scores(sample, settings, workflow=WORKFLOW, run_id=run_id, now=now)
    judged = large_verdicts(scored, settings, workflow=WORKFLOW, run_id=run_id, now=now)
    data = scored.join(judged, on="item_id", how="left")

    meta = resources.scorer(settings).meta
    choice = read_json(settings.ladder.choice_file) or {}
    low = float(choice.get("low", meta.threshold_low))
    high = float(choice.get("high", meta.threshold_high))
    price = load_models(settings).models[settings.ladder.price_model]
    large_usd = np.array(
        [
            call_cost(price, input_tokens=int(i), output_tokens=int(o))
            for i, o in zip(data["input_tokens"], data["output_tokens"], strict=True)
        ]
    )
    probs = data["probability"].to_numpy()
    labels = data["label_ade"].to_numpy().astype(bool)
    # a rejected answer goes to a human: it counts as flagged, never as a silent negative
    large_says = data["large_says"].fill_null(True).to_numpy().astype(bool)
    small_usd = data["small_usd"].to_numpy()
    paths = compare_paths(
        probs, labels, large_says, low=low, high=high, small_usd=small_usd, large_usd=large_usd
    )
    curve = [
        {**c, "usd_per_1k": 1000 * c["cost_usd"] / max(size, 1)}
        for c in sweep(
            probs, labels, large_says, high=high, small_usd=small_usd, large_usd=large_usd
        )
    ]
    result = {
        "split": params.split,
        "test_items": rows.height,
        "in_scope_items": scope.height,
        "product_filter_closed_share": 1 - scope.height / max(rows.height, 1),
        "sample": size,
        "sample_positives": int(labels.sum()),
        "large_model_served_by": str(data["model"].drop_nulls().head(1).to_list()),
        "large_priced_as": settings.ladder.price_model,
        "large_human_review": int((data["outcome"] == "human_review").sum()),
        "mean_large_input_tokens": float(np.mean(data["input_tokens"].to_numpy())),
        "mean_large_output_tokens": float(np.mean(data["output_tokens"].to_numpy())),
        "thresholds": {"low": low, "high": high, "from": "calibration" if choice else "scorer"},
        "paths": paths,
        "cascade_cost_ratio": paths["cascade"]["cost_usd"] / paths["all_large"]["cost_usd"],
        "curve": curve,
    }
    out = params.out_dir
    write_json(result, out / "ladder_eval.json")
    points = {name: (m["usd_per_1k_items"], m["recall"]) for name, m in paths.items()}
    cost_recall_png(curve, points, out / "ladder_eval.png", title=f"cost vs recall, {size} items")
    get_run_logger().info("ladder eval: ratio %.3f", result["cascade_cost_ratio"])
    return result
