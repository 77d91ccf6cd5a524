"""Flow `evaluate-scan`: the nightly scan's screening quality on a labelled split.

Every item of the split is embedded (vectors are reused from LanceDB, so a second run pays
nothing) and scored, so the small model's own recall on *all* positives is measured next to
the cascade's recall on in-scope positives (those mentioning a watched product).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

import polars as pl
from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from tasks.core.evaluation import screening_metrics
from tasks.policy.planner import plan
from tasks.settings import load_settings
from tasks.steps import resources
from tasks.steps.paths import confined_output
from tasks.steps.scan import load_citations, select, source_files, tools_and_route, utcnow, validate
from tasks.steps.training import embed_split

WORKFLOW = "evaluate-scan"
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


@flow(name="evaluate-scan", log_prints=False)
def evaluate_scan(
    split: Literal["calibration", "test"] = "test",
    limit: int | None = None,
    results_dir: str | None = None,
) -> dict[str, Any]:
    settings = load_settings()
    folder = confined_output(settings, results_dir or RESULTS, "results_dir")
    run_id, now = str(flow_run.get_id() or uuid.uuid4()), utcnow()
    citations, _ = load_citations(source_files(None), settings.cache_dir)
    checked = validate(select(citations, None, None, split, limit), settings)
    rows = tools_and_route(checked.valid, settings).sort("item_id")
    vectors = embed_split(rows, settings, workflow=WORKFLOW, run_id=run_id, now=now)
    scorer = resources.scorer(settings)
    chosen = resources.thresholds(settings)  # the ones the nightly scan's planner uses
    thresholds = chosen.thresholds
    scored = rows.with_columns(pl.Series("probability", scorer.probabilities(vectors)))
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
