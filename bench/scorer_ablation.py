"""Ablation of the small scorer on the test split's in-scope items: what each input adds.

Rows: the embedding-only scorer shipped before issue 16 (its artifact as committed at
``BASE_COMMIT``), hashed text alone, text + evidence cues, and the two stacks of the embedding
scorer with a text model (weights fitted on the calibration split, the classic stack: base
models trained on the train split, the combiner on held-out items). For each: in-scope AUC and
WSS@95, the share of in-scope items left open (escalated or case candidate; a hot item is never
closed) at a ``low`` chosen on the calibration split (all 123 positives, target 0.97), the
in-scope recall there with a bootstrap 95% interval, and the threshold-free floor: the share
open at 32/33 and 33/33 in-scope recall on the test split itself (a ceiling, not a result).

Vectors come from PHARMALANE_HOME's LanceDB (embedding what is missing: the calibration split
and the test split's in-scope items). Text models train on every train-split item (no
embedding needed). usage (from the repo root, PYTHONPATH=.):
    python bench/scorer_ablation.py [BASE_COMMIT]   -> bench/results/scorer_ablation.json
    python bench/scorer_ablation.py --shipped   adds "scan_path": the scorer in use on the scan path
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix, hstack

from models.scorer import LogisticScorer, fit_logistic, fit_logistic_sparse
from models.text_features import hashed_counts
from tasks.core.pricing import call_cost
from tasks.core.screening_stats import bootstrap_interval, threshold_at_recall, wss_at_recall
from tasks.policy.planner import plan
from tasks.services import intake as si
from tasks.services.embedding import SCREEN_TASK, texts_of
from tasks.services.runtime import Runtime, utcnow
from tasks.services.scoring import evidence_matrix, item_evidence, probabilities
from tasks.services.training import embed_split
from tasks.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BASE_COMMIT = "1a99469"  # main before issue 16: the embedding-only scorer
TEXT_FEATURES, L2, TARGET = 1 << 16, 1.0, 0.97


def labelled_rows(runtime: Runtime) -> pl.DataFrame:
    citations, _ = si.load_citations(si.source_files(None), runtime.settings.cache_dir)
    frames = []
    for split in ("train", "calibration", "test"):
        valid = si.validate(runtime, si.window(citations, None, None, split, None)).valid
        frames.append(si.tools_and_route(runtime, valid).with_columns(pl.lit(split).alias("split")))
    return pl.concat(frames, how="diagonal_relaxed")


def base_scorer(commit: str) -> LogisticScorer:
    folder = Path(tempfile.mkdtemp())
    for name in ("weights.npz", "meta.json"):
        blob = subprocess.run(  # noqa: S603 (a fixed git command on this repo)
            ["git", "show", f"{commit}:models/artifacts/ade_scorer/{name}"],  # noqa: S607
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        (folder / name).write_bytes(blob)
    return LogisticScorer.load(folder)


def describe(z: np.ndarray, y: np.ndarray, hot: np.ndarray, low: float) -> dict[str, Any]:
    """Test in-scope figures of raw scores ``z`` (y, hot: test in-scope labels and routes)."""
    kept = (z >= low) | hot
    floor = np.sort(z[y])
    return {
        "in_scope_auc": round(float(_auc(z, y)), 4),
        "wss_at_95": round(wss_at_recall(z, y), 4),
        "share_left_open": round(float(kept.mean()), 4),
        "in_scope_recall": round(float(kept[y].mean()), 4),
        "in_scope_recall_95ci": [round(b, 4) for b in bootstrap_interval(kept[y])],
        "floor_share_open_at_recall_32_of_33": round(float(((z >= floor[1]) | hot).mean()), 4),
        "floor_share_open_at_recall_33_of_33": round(float(((z >= floor[0]) | hot).mean()), 4),
    }


def _auc(z: np.ndarray, y: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(z)) + 1
    pos = int(y.sum())
    return (ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos))


def shipped(runtime: Runtime, rows: pl.DataFrame) -> dict[str, Any]:
    """The scan's own path on the test split's in-scope items with the shipped scorer.

    Scores through ``tasks.services.scoring`` and plans with the thresholds the scan uses;
    the cost ratio prices the small path on every item and the large verdict on each
    escalation, against the large verdict on every item (configs/models.yaml prices).
    """
    test = rows.filter((pl.col("split") == "test") & (pl.col("products").list.len() > 0))
    test = test.sort("item_id")
    vectors = embed_split(runtime, test, workflow="evaluate-scan", run_id="ablation", now=utcnow())
    chosen = runtime.thresholds()
    planned = plan(
        test.with_columns(pl.Series("probability", probabilities(runtime, test, vectors))),
        chosen.thresholds,
    )
    y = planned["label_ade"].to_numpy().astype(bool)
    kept = planned["decision"].is_in(["case_candidate", "escalated"]).to_numpy()
    escalated = float((planned["path"] == "escalate").mean())
    settings, catalog = runtime.settings, runtime.rules.models
    tokens = float(np.mean(runtime.embedder.count_tokens(texts_of(test))))
    small = call_cost(catalog.models[catalog.tasks[SCREEN_TASK]], input_tokens=int(tokens))
    large = call_cost(
        catalog.models[settings.ladder.price_model],
        input_tokens=int(tokens) + settings.ladder.prompt_overhead_tokens,
        output_tokens=settings.ladder.output_tokens,
    )
    return {
        "artifact_sha256": runtime.scorer().meta.weights_sha256,
        "recipe": runtime.scorer().meta.training.get("recipe", "embedding only"),
        "thresholds": {
            "low": chosen.thresholds.low,
            "high": chosen.thresholds.high,
            "from": chosen.source,
        },
        "items": int(test.height),
        "positives": int(y.sum()),
        "share_left_open": round(float(kept.mean()), 4),
        "escalated_share": round(escalated, 4),
        "in_scope_recall": round(float(kept[y].mean()), 4),
        "in_scope_recall_95ci": [round(b, 4) for b in bootstrap_interval(kept[y])],
        "wss_at_95": round(wss_at_recall(planned["probability"].to_numpy(), y), 4),
        "cost_ratio_to_all_large": round((small + escalated * large) / large, 4),
        "usd_per_item": {"small": small, "large": large},
    }


def main() -> None:
    settings = load_settings()
    runtime = Runtime.for_settings(settings)
    rows = labelled_rows(runtime)
    out = ROOT / "bench" / "results" / "scorer_ablation.json"
    if sys.argv[1:] == ["--shipped"]:
        results = json.loads(out.read_text())
        results["scan_path"] = shipped(runtime, rows)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["scan_path"], indent=1))
        return
    y = rows["label_ade"].to_numpy().astype(bool)
    split = rows["split"].to_numpy()
    scope = (rows["products"].list.len() > 0).to_numpy()
    hot = (rows["route"] == "hot").to_numpy()
    cal, test_in, train = split == "calibration", (split == "test") & scope, split == "train"
    words = hashed_counts(texts_of(rows), TEXT_FEATURES)
    cues = evidence_matrix(item_evidence(runtime, rows))
    blocks = {"text": words, "text+evidence": hstack([words, csr_matrix(cues)]).tocsr()}
    z: dict[str, np.ndarray] = {}
    for name, x in blocks.items():
        coef, intercept = fit_logistic_sparse(x[train], y[train], l2=L2)
        z[name] = np.asarray(x @ coef) + intercept
    need = cal | test_in
    vectors = embed_split(
        runtime,
        rows.filter(pl.Series(need)),
        workflow="train-scorer",
        run_id="ablation",
        now=utcnow(),
    )
    z_embed = np.full(len(y), np.nan)
    z_embed[need] = base_scorer(sys.argv[1] if len(sys.argv) > 1 else BASE_COMMIT).raw_scores(
        vectors
    )
    z["embedding"] = z_embed
    for name in ("text", "text+evidence"):
        pair = np.column_stack([z_embed, z[name]])
        coef, intercept = fit_logistic(pair[cal], y[cal], l2=0.01, balance=False)
        z[f"embedding + {name} (stacked on calibration)"] = pair @ coef + intercept
    results: dict[str, Any] = {
        "protocol": __doc__,
        "test_in_scope": {"items": int(test_in.sum()), "positives": int((y & test_in).sum())},
        "low_chosen_on": f"calibration split, all {int((y & cal).sum())} positives, {TARGET}",
        "models": {},
    }
    for name, scores in z.items():
        low = threshold_at_recall(scores[cal], y[cal], TARGET)
        results["models"][name] = describe(scores[test_in], y[test_in], hot[test_in], low)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["models"], indent=1))


if __name__ == "__main__":
    main()
