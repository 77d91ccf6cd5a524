"""Simulation: the test split replayed night by night, the scorer retrained on reviewers' labels.

What literature-screening tools such as ASReview do with active learning, in this project's
loop: each night the current scorer screens that night's in-scope test items; the items it
leaves open (escalated or case candidate) go to the review inbox and are resolved, the MeSH
label standing in for the reviewer; then the scorer is retrained with the project's own path
(``reviewer_labels`` -> ``with_reviewer_labels`` -> ``training_rows`` -> ``embed_split`` ->
``fit_and_calibrate``), so a new scorer is simulated as soon as it is merged there.

Each night reports WSS@95 of that night's scorer on the in-scope test items not yet reviewed
(nights still to come: items it was trained on never count), the share it left open and the
positives it closed. Run with `make bench`; writes bench/results/reviewer_nights.json and .png.
Embeddings come from PHARMALANE_HOME's store (paid once); inbox and scorers live in tmp_path.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tasks.core.reviewer_labels import label_counts, training_rows, with_reviewer_labels
from tasks.core.screening_stats import wss_at_recall
from tasks.policy.planner import Thresholds, plan
from tasks.schemas import InboxItem
from tasks.services import intake
from tasks.services.reviewer_labels import reviewer_labels
from tasks.services.runtime import Runtime
from tasks.services.training import embed_split, fit_and_calibrate
from tasks.settings import load_settings

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
NIGHTS = int(os.environ.get("PHARMALANE_BENCH_NIGHTS", "10"))
STAND_IN = "mesh-stand-in"
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def wss_at(scores: list[float], relevant: list[bool]) -> float | None:
    """WSS@95 of ranking by ``scores``; None (JSON null) without a relevant item."""
    value = wss_at_recall(np.asarray(scores, np.float64), np.asarray(relevant, bool))
    return None if np.isnan(value) else value


def bundled_rows(runtime: Runtime) -> pl.DataFrame:
    """Every valid, routed row of the bundled splits."""
    citations, _ = intake.load_citations(intake.source_files(None), runtime.settings.cache_dir)
    rows = intake.window(citations, None, None, "all", None)
    return intake.tools_and_route(runtime, intake.validate(runtime, rows).valid)


def review(sim: Runtime, left_open: pl.DataFrame) -> None:
    """The night's open items into the inbox, resolved with their MeSH label."""
    items = [
        InboxItem(
            item_id=f"literature:{row['item_id']}",
            kind="literature",
            source_id=row["item_id"],
            source="nightly-literature-scan",
            reason=row["decision"],
            day_zero=date(2026, 12, 1),
            clock_days=15,
            due_date=date(2026, 12, 16),
            priority=3,
            evidence={},
        )
        for row in left_open.iter_rows(named=True)
    ]
    sim.inbox.add(items, now=NOW)
    for row in left_open.iter_rows(named=True):
        outcome = "confirmed_icsr" if row["label_ade"] else "not_icsr"
        sim.inbox.resolve(
            f"literature:{row['item_id']}",
            outcome=outcome,
            reviewer=STAND_IN,
            reason_sha256="0" * 64,
            at=NOW,
        )


def retrain(sim: Runtime, store: Runtime, rows: pl.DataFrame, night: int) -> tuple[Any, dict]:
    """The project's training path, with the labels resolved so far."""
    labelled = with_reviewer_labels(rows, reviewer_labels(sim))
    settings = sim.settings.train
    train = training_rows(
        labelled, negatives_per_positive=settings.negatives_per_positive, seed=settings.seed
    )
    calibration = labelled.filter(pl.col("split") == "calibration").sort("item_id")
    run = f"reviewer-nights-{night}"
    x_train = embed_split(store, train, workflow="train-scorer", run_id=run, now=NOW)
    x_cal = embed_split(store, calibration, workflow="train-scorer", run_id=run, now=NOW)
    used = label_counts(pl.concat([train, calibration], how="vertical_relaxed"))
    y_train, y_cal = train["label_ade"].to_numpy(), calibration["label_ade"].to_numpy()
    return fit_and_calibrate(sim, x_train, y_train, x_cal, y_cal, used), used


def night_report(scorer: Any, nights: list[pl.DataFrame], x: dict[str, np.ndarray], k: int):
    """Screen night ``k`` with ``scorer``; WSS@95 on nights ``k`` onwards (not yet reviewed)."""
    ahead = pl.concat(nights[k:])
    p_ahead = scorer.probabilities(np.stack([x[i] for i in ahead["item_id"]]))
    tonight = nights[k].with_columns(
        pl.Series("probability", p_ahead[: nights[k].height], pl.Float64)
    )
    meta = scorer.meta
    decided = plan(tonight, Thresholds(meta.threshold_low, meta.threshold_high))
    left_open = decided.filter(pl.col("decision") != "closed_negative")
    wss = wss_at(p_ahead.tolist(), ahead["label_ade"].to_list())
    report = {
        "night": k + 1,
        "items": tonight.height,
        "positives": int(tonight["label_ade"].sum()),
        "left_open": left_open.height,
        "positives_closed": int(
            decided.filter(pl.col("decision") == "closed_negative")["label_ade"].sum()
        ),
        "wss95_not_yet_reviewed": None if wss is None else round(wss, 4),
        "items_not_yet_reviewed": ahead.height,
        "threshold_low": round(meta.threshold_low, 5),
    }
    return report, left_open


def plot(nights: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [n["night"] for n in nights]
    ax.plot(xs, [n["wss95_not_yet_reviewed"] for n in nights], marker="o", label="WSS@95")
    ax.plot(xs, [n["left_open"] / n["items"] for n in nights], marker="s", label="share left open")
    ax.set_xlabel("night (test split, in scope)")
    ax.set_ylim(-0.1, 1.0)
    ax.legend()
    ax.set_title("Retrained nightly on reviewer labels (MeSH stands in)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@pytest.mark.bench
@pytest.mark.timeout(5400)  # embedding the splits once takes minutes; 90 means it hangs
def test_nights_of_reviewer_labels(tmp_path):
    store = Runtime.for_settings(load_settings())
    sim = Runtime.for_settings(
        load_settings(home=tmp_path / "sim", scorer={"artifact_dir": tmp_path / "scorer"})
    )
    rows = bundled_rows(store)
    scope = rows.filter((pl.col("split") == "test") & (pl.col("products").list.len() > 0))
    scope = scope.sort("pub_date", "item_id")
    x_scope = embed_split(store, scope, workflow="train-scorer", run_id="nights", now=NOW)
    x = dict(zip(scope["item_id"].to_list(), x_scope, strict=True))
    shipped = wss_at(store.scorer().probabilities(x_scope).tolist(), scope["label_ade"].to_list())

    nights = [
        scope.slice(int(a[0]), len(a)) for a in np.array_split(np.arange(scope.height), NIGHTS)
    ]
    scorer, used = retrain(sim, store, rows, 0)
    reports = []
    for k in range(NIGHTS):
        report, left_open = night_report(scorer, nights, x, k)
        reports.append({**report, "labels_used": used})
        review(sim, left_open)
        scorer, used = retrain(sim, store, rows, k + 1)

    result = {
        "in_scope_test_items": scope.height,
        "in_scope_test_positives": int(scope["label_ade"].sum()),
        "wss95_shipped_scorer_all_in_scope_test": None if shipped is None else round(shipped, 4),
        "nights": reports,
        "left_open_share_over_nights": round(
            sum(r["left_open"] for r in reports) / scope.height, 4
        ),
        "positives_closed_over_nights": sum(r["positives_closed"] for r in reports),
        "reviewer_labels_at_end": used["reviewer"],
        "stand_in": "MeSH label (adverse effects | toxicity | chemically induced)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reviewer_nights.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(reports, RESULTS / "reviewer_nights.png")
    assert used["reviewer"] == sum(r["left_open"] for r in reports)
    assert len(reports) == NIGHTS
