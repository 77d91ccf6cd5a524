"""The small model's training: embed splits (paying once), fit and calibrate the scorer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import polars as pl

from models.scorer import LogisticScorer, train_calibrated
from tasks.core.batches import chunk_id
from tasks.errors import BudgetExceeded
from tasks.services.embedding import Batch, embed_paying_once, screen_key
from tasks.services.runtime import Runtime

EMBED_CALL_ROWS = 1024  # rows per paid embedding call


def embed_split(
    runtime: Runtime,
    frame: pl.DataFrame,
    *,
    workflow: str,
    run_id: str,
    now: datetime,
    progress: Callable[[int, int, int], None] = lambda done, total, new: None,
) -> np.ndarray:
    """Vectors for every row (in row order), 1,024 rows per paid call, reusing stored ones.

    ``progress(done, total, newly_embedded)`` is called after each call.

    Raises:
        BudgetExceeded: the workflow's budget refused a call (nothing half-embedded is used).
    """
    parts = []
    for start in range(0, frame.height, EMBED_CALL_ROWS):
        part = frame.slice(start, EMBED_CALL_ROWS)
        batch = Batch(workflow, run_id, chunk_id(part), now, pattern=f"{workflow}/small")
        paid = embed_paying_once(runtime, part, batch)
        if paid.deferred:
            raise BudgetExceeded(
                f"{workflow}: budget spent, {len(paid.deferred)} texts not embedded; "
                "run again in the next budget window or raise configs/budgets.yaml"
            )
        parts.append(np.stack([paid.vectors[i] for i in part["item_id"]]))
        progress(start + part.height, frame.height, paid.embedded)
    dim = runtime.screen_embedder.dimension
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


def fit_and_calibrate(
    runtime: Runtime,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_cal: np.ndarray,
    y_cal: np.ndarray,
    labels: dict[str, int] | None = None,
) -> LogisticScorer:
    """Train on the train split, calibrate on the calibration split, save the artifact.

    ``labels`` (rows labelled by a reviewer and by MeSH) is recorded in the artifact.
    """
    settings = runtime.settings
    scorer = train_calibrated(
        x_train,
        y_train,
        x_cal,
        y_cal,
        embedder=screen_key(runtime),
        l2=settings.train.l2,
        target_recall=settings.scorer.target_recall,
        candidate_precision=settings.scorer.candidate_precision,
        training_info={
            "negatives_per_positive": settings.train.negatives_per_positive,
            "seed": settings.train.seed,
            "label": "MeSH qualifier adverse effects | toxicity | chemically induced",
            "label_counts": labels or {"reviewer": 0, "mesh": len(y_train) + len(y_cal)},
        },
    )
    scorer.save(settings.scorer.artifact_dir)
    return scorer
