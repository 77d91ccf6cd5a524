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
from tasks.core.training import balanced_sample
from tasks.services.runtime import utcnow
from tasks.settings import Settings, load_settings
from tasks.steps.training import embed_split, fit_and_calibrate, fit_recipe

WORKFLOW = "train-scorer"


class TrainSummary(BaseModel):
    artifact: str
    train_items: int
    calibration_items: int
    threshold_low: float
    threshold_high: float
    calibration_recall_at_low: float


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
    rows = intake(settings, split="all").routed
    train = balanced_sample(
        rows.filter(pl.col("split") == "train"),
        negatives_per_positive=settings.train.negatives_per_positive,
        seed=settings.train.seed,
    )
    calibration = rows.filter(pl.col("split") == "calibration").sort("item_id")
    x_train = _vectors(train, settings, run, now)
    x_cal = _vectors(calibration, settings, run, now)
    if settings.train.reads_text:
        scorer = fit_recipe(train, x_train, calibration, x_cal, settings)
    else:
        labels = train["label_ade"].to_numpy(), calibration["label_ade"].to_numpy()
        scorer = fit_and_calibrate(x_train, labels[0], x_cal, labels[1], settings)
    meta = scorer.meta
    get_run_logger().info(
        "scorer saved: low=%.4f high=%.4f", meta.threshold_low, meta.threshold_high
    )
    return TrainSummary(
        artifact=str(settings.scorer.artifact_dir),
        train_items=train.height,
        calibration_items=calibration.height,
        threshold_low=meta.threshold_low,
        threshold_high=meta.threshold_high,
        calibration_recall_at_low=float(meta.training["calibration_recall_at_low"]),
    )
