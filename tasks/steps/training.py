"""Prefect tasks that build and evaluate the small scorer."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.scorer import LogisticScorer, train_calibrated
from tasks.core.batches import chunk_id
from tasks.errors import BudgetExceeded
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.embedding import embed_paying_once


@task(name="embed-split", cache_policy=NO_CACHE)
def embed_split(
    frame: pl.DataFrame, settings: Settings, *, workflow: str, run_id: str, now: datetime
) -> np.ndarray:
    """Vectors for every row (in row order), 1,024 rows per paid call, reusing stored ones."""
    logger = get_run_logger()
    parts = []
    for start in range(0, frame.height, 1024):
        part = frame.slice(start, 1024)
        paid = embed_paying_once(
            part,
            settings,
            workflow=workflow,
            run_id=run_id,
            chunk=chunk_id(part),
            now=now,
            pattern=f"{workflow}/small",
        )
        if paid.deferred:
            raise BudgetExceeded(
                f"{workflow}: budget spent, {len(paid.deferred)} texts not embedded; "
                "run again in the next budget window or raise configs/budgets.yaml"
            )
        parts.append(np.stack([paid.vectors[i] for i in part["item_id"]]))
        logger.info("embedded %d/%d (%d new)", start + part.height, frame.height, paid.embedded)
    dim = resources.embedder().dimension
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


@task(name="fit-and-calibrate", cache_policy=NO_CACHE)
def fit_and_calibrate(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_cal: np.ndarray,
    y_cal: np.ndarray,
    settings: Settings,
) -> LogisticScorer:
    scorer = train_calibrated(
        x_train,
        y_train,
        x_cal,
        y_cal,
        embedder=resources.embedder().name,
        l2=settings.train.l2,
        target_recall=settings.scorer.target_recall,
        candidate_precision=settings.scorer.candidate_precision,
        training_info={
            "negatives_per_positive": settings.train.negatives_per_positive,
            "seed": settings.train.seed,
            "label": "MeSH qualifier adverse effects | toxicity | chemically induced",
        },
    )
    scorer.save(settings.scorer.artifact_dir)
    return scorer
