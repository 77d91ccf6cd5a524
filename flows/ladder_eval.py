"""Flow `ladder-eval`: all-small vs all-large vs the cascade on the test split, priced alike.

In-scope test items (a watched product mentioned) are scored by the small model; a seeded
sample of them is judged by the large model actually served (stored verdicts are reused, so a
re-run pays nothing). Every path is priced from configs/models.yaml: the small model at its
catalog price, the large path at ``ladder.price_model`` on the token counts measured from the
real responses. The cascade uses the thresholds chosen by `calibrate-ladder`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.runs import checked, intake, run_id
from tasks.core.ladder import compare_paths, large_recall_record, recall_validated, sweep
from tasks.core.pricing import call_cost
from tasks.core.verdict import PROMPT_SHA256
from tasks.io.reports import cost_recall_png, write_json
from tasks.rules import ModelPrice
from tasks.services.paths import confined_output
from tasks.services.runtime import ChosenThresholds, Runtime, utcnow
from tasks.settings import REPO_ROOT, Settings, load_settings, with_llm_model
from tasks.steps.ladder import large_verdicts, small_scores

WORKFLOW = "ladder-eval"
RESULTS = REPO_ROOT / "bench" / "results"


class LadderEvalParams(BaseModel):
    split: Literal["test", "calibration"] = "test"
    sample: int | None = Field(
        None, ge=0, le=100_000, description="items the large model judges (0: none)"
    )
    out_dir: Path = Field(RESULTS)
    model: str | None = None


@flow(name="ladder-eval", log_prints=False)
def ladder_eval(
    split: Literal["test", "calibration"] = "test",
    sample: Annotated[int | None, Field(ge=0, le=100_000)] = None,
    out_dir: Path = RESULTS,
    model: str | None = None,
) -> dict[str, Any]:
    """All-small vs all-large vs the cascade on a labelled split; JSON and PNG in ``out_dir``.

    Args:
        split: the labelled split to compare on
        sample: items the large model judges (0: none; default ladder.sample)
        out_dir: folder of ladder_eval.json and ladder_eval.png
        model: model key of configs/models.yaml serving the verdicts; default llm.model
    """
    params = checked(LadderEvalParams, split=split, sample=sample, out_dir=out_dir, model=model)
    settings = with_llm_model(load_settings(), params.model)
    out = confined_output(settings, params.out_dir, "out_dir")
    runtime, run, now = Runtime.for_settings(settings), run_id(), utcnow()
    rows = intake(settings, split=params.split).routed
    scope = rows.filter(pl.col("products").list.len() > 0).sort("item_id")
    scored = small_scores(scope, settings, workflow=WORKFLOW, run_id=run, now=now)
    chosen = runtime.thresholds()
    price = runtime.rules.models.models[settings.ladder.price_model]
    # 1. every in-scope item; the large path priced on estimated tokens, its verdict assumed
    #    right (an upper bound on what any large model adds): the cost side at full size.
    est_large = _estimated_large_usd(scored, settings, price)
    labels_all = scored["label_ade"].to_numpy().astype(bool)
    low, high = chosen.thresholds.low, chosen.thresholds.high
    estimated = _paths(scored, labels_all, est_large, low, high)
    # 2. a seeded sample judged by the large model actually served: measured tokens and verdicts
    size = min(
        params.sample if params.sample is not None else settings.ladder.sample, scored.height
    )
    measured: dict[str, Any] = {"sample": size}
    if size:
        measured |= _measured(runtime, scored, est_large, size, chosen, params.split, run, now)
    curve = _curve(scored, labels_all, est_large, high)
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
    _write(result, out, estimated, curve, f"{params.split}: {scope.height} in-scope items")
    return result


def _estimated_large_usd(scored: pl.DataFrame, settings: Settings, price: ModelPrice) -> np.ndarray:
    overhead, out_tokens = settings.ladder.prompt_overhead_tokens, settings.ladder.output_tokens
    return np.array(
        [
            call_cost(price, input_tokens=t + overhead, output_tokens=out_tokens)
            for t in scored["tokens"]
        ]
    )


def _measured(
    runtime: Runtime,
    scored: pl.DataFrame,
    est_large: np.ndarray,
    size: int,
    chosen: ChosenThresholds,
    split: str,
    run: str,
    now: datetime,
) -> dict[str, Any]:
    """The sample's verdicts from the served model, priced; its recall record for the lane."""
    settings = runtime.settings
    price = runtime.rules.models.models[settings.ladder.price_model]
    sample = scored.sample(size, seed=settings.ladder.seed).sort("item_id")
    judged = large_verdicts(sample, settings, workflow=WORKFLOW, run_id=run, now=now)
    data = sample.join(judged, on="item_id", how="left")
    large_usd = np.array(
        [
            call_cost(price, input_tokens=int(i), output_tokens=int(o))
            for i, o in zip(data["input_tokens"], data["output_tokens"], strict=True)
        ]
    )
    # a rejected answer goes to a human: it counts as flagged, never as a silent negative
    says = data["large_says"].fill_null(True).to_numpy().astype(bool)
    low, high = chosen.thresholds.low, chosen.thresholds.high
    measured = {
        "sample": size,
        "served_by": data["model"].drop_nulls().unique().to_list(),
        "sample_positives": int(data["label_ade"].sum()),
        "human_review": int((data["outcome"] == "human_review").sum()),
        "mean_input_tokens": float(np.mean(data["input_tokens"].to_numpy())),
        "mean_output_tokens": float(np.mean(data["output_tokens"].to_numpy())),
        "estimated_large_usd_on_sample": float(est_large[_positions(scored, data)].sum()),
        "measured_large_usd_on_sample": float(large_usd.sum()),
        "paths": _paths(data, says, large_usd, low, high),
    }
    measured["validated_to_close"] = _record_recall(runtime, measured, split, now)
    return measured


def _record_recall(runtime: Runtime, measured: dict[str, Any], split: str, now: datetime) -> bool:
    """What the lane's policy reads: may this model's "no" close an item on its own?"""
    ladder, model_key = runtime.settings.ladder, runtime.llm.name
    record = large_recall_record(
        measured,
        model=model_key,
        prompt_sha256=PROMPT_SHA256,
        split=split,
        measured_at=now.isoformat(),
    )
    write_json(record, ladder.large_recall_dir / f"{model_key}.json")
    return recall_validated(
        record,
        model=model_key,
        prompt_sha256=PROMPT_SHA256,
        target_recall=ladder.target_recall,
        min_positives=ladder.min_validation_positives,
    )


def _curve(
    scored: pl.DataFrame, labels: np.ndarray, est_large: np.ndarray, high: float
) -> list[dict[str, Any]]:
    return [
        {**c, "usd_per_1k": 1000 * c["cost_usd"] / max(scored.height, 1)}
        for c in sweep(
            scored["probability"].to_numpy(),
            labels,
            labels,
            high=high,
            small_usd=scored["small_usd"].to_numpy(),
            large_usd=est_large,
        )
    ]


def _write(
    result: dict[str, Any],
    out: Path,
    estimated: dict[str, dict[str, Any]],
    curve: list[dict[str, Any]],
    title: str,
) -> None:
    write_json(result, out / "ladder_eval.json")
    points = {name: (m["usd_per_1k_items"], m["recall"]) for name, m in estimated.items()}
    cost_recall_png(curve, points, out / "ladder_eval.png", title=title)
    get_run_logger().info("ladder eval: cascade/all-large cost %.3f", result["cascade_cost_ratio"])


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
