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

from tasks.core.ladder import compare_paths, large_recall_record, recall_validated, sweep
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_SHA256
from tasks.io.reports import cost_recall_png, write_json
from tasks.rules import load_models
from tasks.settings import REPO_ROOT, load_settings
from tasks.steps import resources
from tasks.steps.ladder import large_verdicts, small_scores
from tasks.steps.paths import confined_output
from tasks.steps.scan import load_citations, select, source_files, tools_and_route, utcnow, validate

WORKFLOW = "ladder-eval"


class LadderEvalParams(BaseModel):
    split: str = Field("test", pattern="^(test|calibration)$")
    sample: int | None = Field(
        None, ge=0, le=100_000, description="items the large model judges (0: none)"
    )
    out_dir: Path = Field(REPO_ROOT / "bench" / "results")


@flow(name="ladder-eval", log_prints=False)
def ladder_eval(params: LadderEvalParams | None = None) -> dict[str, Any]:
    params = params or LadderEvalParams()
    settings = load_settings()
    out = confined_output(settings, params.out_dir, "out_dir")
    run_id, now = str(flow_run.get_id() or uuid.uuid4()), utcnow()
    citations, _ = load_citations(source_files(None), settings.cache_dir)
    checked = validate(select(citations, None, None, params.split, None), settings)
    rows = tools_and_route(checked.valid, settings)
    scope = rows.filter(pl.col("products").list.len() > 0).sort("item_id")
    scored = small_scores(scope, settings, workflow=WORKFLOW, run_id=run_id, now=now)

    chosen = resources.thresholds(settings)
    low, high = chosen.thresholds.low, chosen.thresholds.high
    price = load_models(settings).models[settings.ladder.price_model]

    # 1. every in-scope item; the large path priced on estimated tokens, its verdict assumed
    #    right (an upper bound on what any large model adds): the cost side at full size.
    overhead, out_tokens = settings.ladder.prompt_overhead_tokens, settings.ladder.output_tokens
    est_large = np.array(
        [
            call_cost(price, input_tokens=t + overhead, output_tokens=out_tokens)
            for t in scored["tokens"]
        ]
    )
    labels_all = scored["label_ade"].to_numpy().astype(bool)
    estimated = _paths(scored, labels_all, est_large, low, high)

    # 2. a seeded sample judged by the large model actually served: measured tokens and verdicts
    size = min(
        params.sample if params.sample is not None else settings.ladder.sample, scored.height
    )
    measured: dict[str, Any] = {"sample": size}
    if size:
        sample = scored.sample(size, seed=settings.ladder.seed).sort("item_id")
        judged = large_verdicts(sample, settings, workflow=WORKFLOW, run_id=run_id, now=now)
        data = sample.join(judged, on="item_id", how="left")
        large_usd = np.array(
            [
                call_cost(price, input_tokens=int(i), output_tokens=int(o))
                for i, o in zip(data["input_tokens"], data["output_tokens"], strict=True)
            ]
        )
        # a rejected answer goes to a human: it counts as flagged, never as a silent negative
        says = data["large_says"].fill_null(True).to_numpy().astype(bool)
        measured |= {
            "served_by": data["model"].drop_nulls().unique().to_list(),
            "sample_positives": int(data["label_ade"].sum()),
            "human_review": int((data["outcome"] == "human_review").sum()),
            "mean_input_tokens": float(np.mean(data["input_tokens"].to_numpy())),
            "mean_output_tokens": float(np.mean(data["output_tokens"].to_numpy())),
            "estimated_large_usd_on_sample": float(est_large[_positions(scored, data)].sum()),
            "measured_large_usd_on_sample": float(large_usd.sum()),
            "paths": _paths(data, says, large_usd, low, high),
        }
        # what the lane's policy reads: may this model's "no" close an item on its own?
        model_key = resources.llm(settings).name
        record = large_recall_record(
            measured,
            model=model_key,
            prompt_sha256=PROMPT_SHA256,
            split=params.split,
            measured_at=now.isoformat(),
        )
        write_json(record, settings.ladder.large_recall_dir / f"{model_key}.json")
        measured["validated_to_close"] = recall_validated(
            record,
            model=model_key,
            prompt_sha256=PROMPT_SHA256,
            target_recall=settings.ladder.target_recall,
            min_positives=settings.ladder.min_validation_positives,
        )

    curve = [
        {**c, "usd_per_1k": 1000 * c["cost_usd"] / max(scored.height, 1)}
        for c in sweep(
            scored["probability"].to_numpy(),
            labels_all,
            labels_all,
            high=high,
            small_usd=scored["small_usd"].to_numpy(),
            large_usd=est_large,
        )
    ]
    result = {
        "split": params.split,
        "items": rows.height,
        "in_scope_items": scope.height,
        "product_filter_closed_share": 1 - scope.height / max(rows.height, 1),
        "in_scope_positives": int(labels_all.sum()),
        "large_priced_as": settings.ladder.price_model,
        "thresholds": {"low": low, "high": high, "from": chosen.source, "note": chosen.note},
        "estimated_all_in_scope": estimated,
        "cascade_cost_ratio": estimated["cascade"]["cost_usd"] / estimated["all_large"]["cost_usd"],
        "measured_sample": measured,
        "curve": curve,
    }
    write_json(result, out / "ladder_eval.json")
    points = {name: (m["usd_per_1k_items"], m["recall"]) for name, m in estimated.items()}
    cost_recall_png(
        curve,
        points,
        out / "ladder_eval.png",
        title=f"{params.split}: {scope.height} in-scope items",
    )
    get_run_logger().info("ladder eval: cascade/all-large cost %.3f", result["cascade_cost_ratio"])
    return result


def _paths(
    frame: pl.DataFrame, large_says: np.ndarray, large_usd: np.ndarray, low: float, high: float
) -> dict[str, dict[str, Any]]:
    return compare_paths(
        frame["probability"].to_numpy(),
        frame["label_ade"].to_numpy().astype(bool),
        large_says,
        low=low,
        high=high,
        small_usd=frame["small_usd"].to_numpy(),
        large_usd=large_usd,
    )


def _positions(scored: pl.DataFrame, subset: pl.DataFrame) -> np.ndarray:
    index = {item: i for i, item in enumerate(scored["item_id"].to_list())}
    return np.array([index[i] for i in subset["item_id"].to_list()], dtype=np.int64)
