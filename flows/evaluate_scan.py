"""Flow `evaluate-scan`: the nightly scan's screening quality on a labelled split.

Every item of the split is embedded (vectors are reused from LanceDB, so a second run pays
nothing) and scored, so the small model's own recall on *all* positives is measured next to
the cascade's recall on in-scope positives (those mentioning a watched product).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import polars as pl
from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.runs import intake, run_id
from tasks.core.evaluation import screening_metrics
from tasks.policy.planner import plan
from tasks.services.paths import confined_output
from tasks.services.runtime import Runtime, utcnow
from tasks.services.scoring import probabilities
from tasks.settings import load_settings
from tasks.steps.training import embed_split

WORKFLOW = "evaluate-scan"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


@flow(name="evaluate-scan", log_prints=False)
def evaluate_scan(
    split: Literal["calibration", "test"] = "test",
    limit: int | None = None,
    results_dir: str | None = None,
) -> dict[str, Any]:
    """The scan's screening quality on a labelled split, written to ``eval_<split>.json``.

    Args:
        split: the labelled split to measure on
        limit: only the first items (quick checks)
        results_dir: folder of the JSON; default bench/results
    """
    settings = load_settings()
    folder = confined_output(settings, results_dir or RESULTS, "results_dir")
    runtime, run, now = Runtime.for_settings(settings), run_id(), utcnow()
    rows = intake(settings, split=split, limit=limit).routed.sort("item_id")
    vectors = embed_split(rows, settings, workflow=WORKFLOW, run_id=run, now=now)
    scorer = runtime.scorer()
    chosen = runtime.thresholds()  # the ones the nightly scan's planner uses
    thresholds = chosen.thresholds
    scored = rows.with_columns(pl.Series("probability", probabilities(runtime, rows, vectors)))
    # The scan only scores in-scope items; out-of-scope ones take the tool path whatever p is.
    planned = plan(
        scored.with_columns(
            pl.when(pl.col("products").list.len() > 0).then(pl.col("probability")).otherwise(None)
        ),
        thresholds,
    ).with_columns(scored["probability"])
    metrics = {
        "split": split,
        "thresholds": {
            "low": thresholds.low,
            "high": thresholds.high,
            "from": chosen.source,
            "note": chosen.note,
        },
        "scorer": scorer.meta.training,
        **screening_metrics(planned, low=thresholds.low, high=thresholds.high),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"eval_{split}.json"
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    create_table_artifact(
        key=f"evaluate-scan-{split}",
        table=[
            {"measure": "in-scope recall", "value": str(metrics["in_scope"]["recall"])},
            {
                "measure": "small-model recall (all)",
                "value": str(metrics["small_model_all_items"]["recall_at_low"]),
            },
        ],
        description=f"Screening quality on the {split} split",
    )
    return metrics
