"""Benchmark: the screening embedder at 128 tokens (and a head-tail window) against today's 256.

all-MiniLM-L6-v2 was trained on 128-token inputs; the scan embeds up to 256. For each setting
this embeds the in-scope items of the bundled splits (those naming a watched product: the only
ones the small model decides), scores them with the shipped scorer and its thresholds, and
compares the planner's decisions with today's. A cheaper setting is adopted only when decisions
agree on >= 99.5% of the in-scope items and in-scope recall holds on every split.

Run with `make bench` (or `pytest -m bench tests/bench/test_embedder_settings.py -o
addopts=""`). The model runs directly on the texts (no cache), so the rates are the model's.
Writes bench/results/embedder_settings.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.policy.planner import plan
from tasks.services import intake
from tasks.services.embedding import screen_key, screen_texts
from tasks.services.runtime import Runtime
from tasks.settings import load_settings

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
TODAY = {"embed_max_tokens": 256, "embed_window": "full"}
CANDIDATES = (
    {"embed_max_tokens": 128, "embed_window": "full"},
    {"embed_max_tokens": 128, "embed_window": "head-tail"},
)
MIN_AGREEMENT = 0.995
ITEMS = int(os.environ.get("PHARMALANE_BENCH_SETTINGS_ITEMS", "0"))  # 0: every in-scope item


def in_scope_rows() -> pl.DataFrame:
    """Every in-scope item of the bundled train, calibration and test splits, with its label."""
    runtime = Runtime.for_settings(load_settings())
    citations, _ = intake.load_citations(intake.source_files(None), runtime.settings.cache_dir)
    rows = intake.window(citations, None, None, "all", None)
    routed = intake.tools_and_route(runtime, rows)
    in_scope = routed.filter(pl.col("products").list.len() > 0)
    valid = intake.validate(runtime, in_scope).valid
    kept = in_scope.filter(pl.col("item_id").is_in(valid["item_id"].implode())).sort("item_id")
    return kept.gather_every(max(1, kept.height // ITEMS)) if ITEMS else kept


def decide(rows: pl.DataFrame, scan: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The planner's decision for each row under one embedder setting, and its speed."""
    runtime = Runtime.for_settings(load_settings(scan=scan))
    model = runtime.screen_embedder
    batch_size = runtime.settings.scan.embed_batch_size
    start = time.perf_counter()
    texts = screen_texts(runtime, rows)
    windowed = time.perf_counter()
    vectors = model.embed(texts, batch_size=batch_size)
    done = time.perf_counter()
    probability = pl.Series("probability", runtime.scorer().probabilities(vectors), pl.Float64)
    decided = plan(rows.with_columns(probability), runtime.thresholds().thresholds)
    speed = {
        "key": screen_key(runtime),
        "mean_tokens_read": round(sum(model.count_tokens(texts)) / len(texts), 1),
        "window_seconds": round(windowed - start, 2),
        "embed_seconds": round(done - windowed, 2),
        "abstracts_per_s": round(len(texts) / (done - start), 2),
    }
    return decided.select("item_id", "split", "label_ade", "decision"), speed


def compare(today: pl.DataFrame, other: pl.DataFrame) -> dict[str, Any]:
    """Agreement with today's decisions and in-scope recall per split."""
    joined = today.join(other.select("item_id", "decision"), on="item_id", suffix="_other")
    result: dict[str, Any] = {
        "agreement": round(float((joined["decision"] == joined["decision_other"]).mean()), 4),
        "changed": joined.filter(pl.col("decision") != pl.col("decision_other"))
        .group_by("decision", "decision_other")
        .len()
        .sort("len", descending=True)
        .to_dicts(),
    }
    for split, part in joined.group_by("split"):
        positives = part.filter(pl.col("label_ade"))
        result[f"recall_{split[0]}"] = round(
            float((positives["decision_other"] != "closed_negative").mean()), 4
        )
        result[f"positives_{split[0]}"] = positives.height
    return result


@pytest.mark.bench
@pytest.mark.timeout(3600)  # a benchmark runs for minutes; an hour means it hangs
def test_embedder_settings_against_today():
    rows = in_scope_rows()
    today, today_speed = decide(rows, TODAY)
    baseline = compare(today, today)
    settings: list[dict[str, Any]] = [{**TODAY, **today_speed, **baseline, "adoptable": True}]
    for scan in CANDIDATES:
        decided, speed = decide(rows, scan)
        measured = compare(today, decided)
        recall_holds = all(measured[k] >= baseline[k] for k in baseline if k.startswith("recall_"))
        adoptable = measured["agreement"] >= MIN_AGREEMENT and recall_holds
        settings.append({**scan, **speed, **measured, "adoptable": adoptable})
    cheaper = [s for s in settings[1:] if s["adoptable"]]
    chosen = max(cheaper, key=lambda s: s["abstracts_per_s"]) if cheaper else settings[0]
    result = {
        "in_scope_items": rows.height,
        "splits": rows["split"].value_counts().sort("split").to_dicts(),
        "rule": f"adopt only if agreement >= {MIN_AGREEMENT} and in-scope recall holds",
        "settings": settings,
        "chosen": {k: chosen[k] for k in ("embed_max_tokens", "embed_window", "key")},
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedder_settings.json").write_text(json.dumps(result, indent=2) + "\n")
    assert settings[0]["agreement"] == 1.0
    assert all(0.0 < s["agreement"] <= 1.0 for s in settings)
