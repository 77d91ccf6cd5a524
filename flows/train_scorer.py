"""Flow `train-scorer`: rebuild the small model's scorer from the bundled PubMed data.

Train split (pmid % 10 in 0-6): every positive and a seeded sample of negatives. Calibration
split (7): Platt scaling and the thresholds. The test split (8-9) is never read here. With
``train.text_features`` / ``train.evidence`` the scorer reads hashed words and evidence cues
beside (or, at ``embedding_weight: 0``, instead of) the embedding, and ``low`` is chosen by
cross-validation over train + calibration.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.runs import intake, run_id
from tasks.core.reviewer_labels import label_counts, training_rows, with_reviewer_labels
from tasks.services.runtime import utcnow
from tasks.settings import Settings, load_settings
from tasks.steps.training import embed_split, fit_and_calibrate, fit_recipe, reviewer_labels

WORKFLOW = "train-scorer"


class TrainSummary(BaseModel):
    artifact: str
    train_items: int
    calibration_items: int
    threshold_low: float
    threshold_high: float
    calibration_recall_at_low: float
    reviewer_labels: int = 0
    mesh_labels: int = 0


def _vectors(frame: pl.DataFrame, settings: Settings, run: str, now: datetime) -> np.ndarray:
    """The rows' embeddings, or none (0 columns) for a scorer that reads only the text."""
    if settings.train.embedding_weight == 0 and settings.train.reads_text:
        return np.zeros((frame.height, 0), dtype=np.float32)
    return embed_split(frame, settings, workflow=WORKFLOW, run_id=run, now=now)


@flow(name="train-scorer", log_prints=False)
def train_scorer() -> TrainSummary:
    """Train on the train split, calibrate on the calibration split, save the scorer."""
    settings = load_settings()
    run, now = run_id(), utcnow()
    rows = with_reviewer_labels(intake(settings, split="all").routed, reviewer_labels(settings))
    train = training_rows(
        rows,
        negatives_per_positive=settings.train.negatives_per_positive,
        seed=settings.train.seed,
    )
    calibration = rows.filter(pl.col("split") == "calibration").sort("item_id")
    x_train = _vectors(train, settings, run, now)
    x_cal = _vectors(calibration, settings, run, now)
    used = label_counts(pl.concat([train, calibration], how="vertical_relaxed"))
    if settings.train.reads_text:
        scorer = fit_recipe(train, x_train, calibration, x_cal, settings)
    else:
        y_train, y_cal = train["label_ade"].to_numpy(), calibration["label_ade"].to_numpy()
        scorer = fit_and_calibrate(x_train, y_train, x_cal, y_cal, settings, labels=used)
    meta = scorer.meta
    get_run_logger().info(
        "scorer saved: low=%.4f high=%.4f; labels: %d by reviewers, %d by MeSH",
        meta.threshold_low,
        meta.threshold_high,
        used["reviewer"],
        used["mesh"],
    )
    return TrainSummary(
        artifact=str(settings.scorer.artifact_dir),
        train_items=train.height,
        calibration_items=calibration.height,
        threshold_low=meta.threshold_low,
        threshold_high=meta.threshold_high,
        calibration_recall_at_low=float(meta.training["calibration_recall_at_low"]),
        reviewer_labels=used["reviewer"],
        mesh_labels=used["mesh"],
    )
