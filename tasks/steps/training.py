"""Prefect tasks that build the small scorer; the work is in tasks/services/training.py."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.scorer import LogisticScorer
from tasks.services import reviewer_labels as labels
from tasks.services import training
from tasks.services.runtime import Runtime
from tasks.settings import Settings


@task(name="embed-split", cache_policy=NO_CACHE)
def embed_split(
    frame: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> np.ndarray:
    """Vectors for every row (in row order), 1,024 rows per paid call, reusing stored ones."""
    logger = get_run_logger()
    return training.embed_split(
        Runtime.for_settings(settings),
        frame,
        workflow=workflow,
        run_id=run_id,
        now=now,
        progress=lambda done, total, new: logger.info("embedded %d/%d (%d new)", done, total, new),
    )


@task(name="fit-and-calibrate", cache_policy=NO_CACHE)
def fit_and_calibrate(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_cal: np.ndarray,
    y_cal: np.ndarray,
    settings: Settings,
    labels: dict[str, int] | None = None,
) -> LogisticScorer:
    """Train, calibrate and save the scorer (see tasks/services/training.py)."""
    return training.fit_and_calibrate(
        Runtime.for_settings(settings), x_train, y_train, x_cal, y_cal, labels
    )


@task(name="fit-recipe", cache_policy=NO_CACHE)
def fit_recipe(
    train: pl.DataFrame,
    x_train: np.ndarray,
    calibration: pl.DataFrame,
    x_cal: np.ndarray,
    settings: Settings,
) -> LogisticScorer:
    """Train the scorer over embedding, hashed text and evidence (tasks/services/training.py)."""
    return training.fit_recipe(Runtime.for_settings(settings), train, x_train, calibration, x_cal)


@task(name="reviewer-labels", cache_policy=NO_CACHE)
def reviewer_labels(settings: Settings) -> pl.DataFrame:
    """Labels of literature items a human resolved in the review inbox."""
    return labels.reviewer_labels(Runtime.for_settings(settings))
