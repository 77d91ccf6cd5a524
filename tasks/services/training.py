"""The small model's training: embed splits (paying once), fit and calibrate the scorer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import numpy as np
import polars as pl
from scipy.sparse import vstack

from models.scorer import (
    Features,
    LogisticScorer,
    Recipe,
    ScorerMeta,
    design_matrix,
    out_of_fold_scores,
    train_calibrated,
    train_on_features,
)
from tasks.core.batches import chunk_id
from tasks.core.screening_stats import stratified_folds, threshold_at_recall
from tasks.errors import BudgetExceeded
from tasks.services.embedding import Batch, embed_paying_once, screen_key, texts_of
from tasks.services.runtime import Runtime
from tasks.services.scoring import evidence_matrix, item_evidence
from tasks.settings import Settings
from tasks.tools.evidence import FEATURE_NAMES

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


def fit_recipe(
    runtime: Runtime,
    train: pl.DataFrame,
    x_train: np.ndarray,
    calibration: pl.DataFrame,
    x_cal: np.ndarray,
) -> LogisticScorer:
    """Train the scorer of ``settings.train`` (embedding, hashed text, evidence), save it.

    ``low`` is chosen by cross-validation over train + calibration together: the highest raw
    score that keeps ``cv_target_recall`` of the in-scope positives out of fold (132 of them,
    against 12 on the calibration split alone), mapped through the calibration. ``x_train`` and
    ``x_cal`` may have 0 columns when the recipe does not read the embedding.
    """
    settings = runtime.settings
    recipe = Recipe(
        text_features=settings.train.text_features,
        evidence_features=list(FEATURE_NAMES) if settings.train.evidence else [],
        block_weights=[settings.train.embedding_weight, 1.0, 1.0],
        l2=settings.train.l2,
    )
    meta = ScorerMeta(
        embedder=runtime.embedder.name,
        dimension=runtime.embedder.dimension,
        threshold_low=0.0,
        threshold_high=1.0,
        target_recall=settings.scorer.target_recall,
        candidate_precision=settings.scorer.candidate_precision,
        training=_training_info(settings, recipe),
    )
    f_train, f_cal = _features(runtime, train, x_train), _features(runtime, calibration, x_cal)
    shell = replace(
        meta,
        text_features=recipe.text_features,
        evidence_features=list(recipe.evidence_features),
        block_weights=list(recipe.block_weights),
    )
    raw_low = _cross_validated_low(
        settings, (train, calibration), (f_train, f_cal), shell, recipe.l2
    )
    scorer = train_on_features(
        f_train,
        train["label_ade"].to_numpy().astype(bool),
        f_cal,
        calibration["label_ade"].to_numpy().astype(bool),
        recipe=recipe,
        meta=meta,
        raw_low=raw_low,
    )
    scorer.save(settings.scorer.artifact_dir)
    return scorer


def _training_info(settings: Settings, recipe: Recipe) -> dict[str, object]:
    return {
        "negatives_per_positive": settings.train.negatives_per_positive,
        "seed": settings.train.seed,
        "label": "MeSH qualifier adverse effects | toxicity | chemically induced",
        "recipe": {
            "embedding_weight": recipe.block_weights[0],
            "text_features": recipe.text_features,
            "evidence": bool(recipe.evidence_features),
            "l2": recipe.l2,
        },
        "cv_folds": settings.train.cv_folds,
        "cv_target_recall_in_scope": settings.train.cv_target_recall,
    }


def _features(runtime: Runtime, frame: pl.DataFrame, vectors: np.ndarray) -> Features:
    found = item_evidence(runtime, frame) if runtime.settings.train.evidence else []
    evidence = evidence_matrix(found) if found else None
    return Features(vectors, texts_of(frame), evidence)


def _cross_validated_low(
    settings: Settings,
    frames: tuple[pl.DataFrame, pl.DataFrame],
    features: tuple[Features, Features],
    shell: ScorerMeta,
    l2: float,
) -> float:
    """The raw-score ``low`` keeping the target in-scope recall out of fold (train + cal)."""
    x = vstack([design_matrix(f, shell) for f in features], format="csr")
    both = pl.concat([f.select("label_ade", "products") for f in frames])
    y = both["label_ade"].to_numpy().astype(bool)
    in_scope = (both["products"].list.len() > 0).to_numpy()
    folds = stratified_folds(y, settings.train.cv_folds, settings.train.seed)
    scores = out_of_fold_scores(x, y, folds, l2=l2)
    return threshold_at_recall(scores, y & in_scope, settings.train.cv_target_recall)
