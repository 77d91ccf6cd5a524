"""The small model's judgement: a logistic scorer on embeddings, calibrated, stored as arrays.

Training is L2-regularised logistic regression solved by Newton's method (deterministic, no
randomness), with class weights so the rare positives count. Platt scaling on the held-out
calibration split then maps scores to probabilities at the true prevalence. The artifact is a
``.npz`` of plain arrays (loaded with ``allow_pickle=False``) plus ``meta.json`` holding its
sha256: a tampered or truncated file is refused, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.sparse import csr_matrix, hstack

from models.text_features import hashed_counts

FloatArray = npt.NDArray[np.float64]
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"


class ScorerArtifactError(ValueError):
    """The stored scorer is missing, corrupt or made for another embedder."""


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def fit_logistic(
    x: npt.NDArray[np.floating[Any]],
    y: npt.NDArray[np.bool_],
    *,
    l2: float = 1.0,
    balance: bool = True,
    iterations: int = 50,
) -> tuple[FloatArray, float]:
    """Weights and intercept of an L2-regularised logistic regression (Newton's method).

    Args:
        x: features, one row per item.
        y: labels.
        l2: ridge penalty on the weights (not the intercept).
        balance: weight classes inversely to their frequency.
        iterations: Newton steps at most; stops early when the step is tiny.
    """
    n, d = x.shape
    if n == 0 or y.all() or not y.any():
        raise ValueError("training needs both positive and negative examples")
    design = np.hstack([np.asarray(x, dtype=np.float64), np.ones((n, 1))])
    target = y.astype(np.float64)
    if balance:
        pos = target.sum()
        weights = np.where(target > 0, n / (2 * pos), n / (2 * (n - pos)))
    else:
        weights = np.ones(n)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    beta = np.zeros(d + 1)
    for _ in range(iterations):
        prob = _sigmoid(design @ beta)
        gradient = design.T @ (weights * (prob - target)) + penalty * beta
        hessian = (design * (weights * prob * (1 - prob))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(d + 1), gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1].copy(), float(beta[-1])


def fit_platt(scores: FloatArray, y: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a * score + b)`` fitted by maximum likelihood."""
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    # Platt's smoothed targets keep the fit finite when the classes separate.
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    design = np.column_stack([scores, np.ones_like(scores)])
    beta = np.array([1.0, 0.0])
    for _ in range(100):
        prob = _sigmoid(design @ beta)
        gradient = design.T @ (prob - target)
        hessian = (design * (prob * (1 - prob))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def choose_thresholds(
    probs: FloatArray, y: npt.NDArray[np.bool_], *, target_recall: float, candidate_precision: float
) -> tuple[float, float]:
    """(low, high): ``low`` keeps recall >= target; ``high`` reaches the precision, else 1.

    ``low`` is the highest bound that still lets through all but
    ``floor((1 - target_recall) * positives)`` positives. ``high`` is the lowest bound whose
    items are at least ``candidate_precision`` positive (with at least 5 of them).
    """
    positives = np.sort(probs[y])
    if positives.size == 0:
        raise ValueError("calibration needs positives")
    allowed_misses = math.floor((1 - target_recall) * positives.size + 1e-9)
    low = float(np.nextafter(positives[allowed_misses], -np.inf))
    order = np.argsort(-probs)
    hits = np.cumsum(y[order])
    ranks = np.arange(1, probs.size + 1)
    precision = hits / ranks
    high = 1.0
    ok = np.flatnonzero((precision >= candidate_precision) & (ranks >= 5))
    if ok.size:
        high = float(probs[order][ok.max()])
    return max(0.0, low), max(high, low)


@dataclass(frozen=True)
class ScorerMeta:
    """What the scorer was made from and the calibration choice, stored beside the arrays."""

    embedder: str
    dimension: int
    threshold_low: float
    threshold_high: float
    target_recall: float
    candidate_precision: float
    weights_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    calibration_curve: list[dict[str, float]] = field(default_factory=list)
    # Beside the embedding (0 and [] in a scorer that reads only the embedding):
    text_features: int = 0  # hashed word columns of the text (models/text_features.py)
    evidence_features: list[str] = field(default_factory=list)  # tasks/tools/evidence.py names
    block_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    @property
    def reads_embedding(self) -> bool:
        """False when measurement chose a scorer of the text alone (block weight 0)."""
        return self.block_weights[0] > 0

    @property
    def width(self) -> int:
        """Columns of the design matrix: embedding (if read), hashed text, evidence."""
        embedding = self.dimension if self.reads_embedding else 0
        return embedding + self.text_features + len(self.evidence_features)


@dataclass(frozen=True)
class Features:
    """What the scorer reads of each item: its embedding and, if it was trained so, the text
    (title and abstract, as embedded) and the evidence vector (``FEATURE_NAMES`` order)."""

    vectors: npt.NDArray[np.floating[Any]]
    texts: Sequence[str] | None = None
    evidence: npt.NDArray[np.floating[Any]] | None = None


def design_matrix(features: Features, meta: ScorerMeta) -> csr_matrix:
    """The scorer's input rows: weighted blocks [embedding | hashed text | evidence].

    Raises:
        ScorerArtifactError: a block the scorer was trained on is missing or of another width.
    """
    vectors = np.asarray(features.vectors, dtype=np.float64)
    # a scorer of the text alone uses only the row count (training passes shape (n, 0))
    if vectors.ndim != 2 or (meta.reads_embedding and vectors.shape[1] != meta.dimension):
        raise ScorerArtifactError(
            f"vectors have {vectors.shape[-1]} dimensions, the scorer expects "
            f"{meta.dimension} ({meta.embedder}): retrain with `pharmalane train`"
        )
    n = vectors.shape[0]
    w_embed, w_text, w_evidence = meta.block_weights
    blocks: list[Any] = [csr_matrix(w_embed * vectors)] if meta.reads_embedding else []
    if meta.text_features:
        if features.texts is None or len(features.texts) != n:
            raise ScorerArtifactError("this scorer reads the text too: pass one text per item")
        blocks.append(w_text * hashed_counts(features.texts, meta.text_features))
    if meta.evidence_features:
        evidence = features.evidence
        if evidence is None or evidence.shape != (n, len(meta.evidence_features)):
            raise ScorerArtifactError(
                f"this scorer reads {len(meta.evidence_features)} evidence features per item"
            )
        blocks.append(csr_matrix(w_evidence * np.asarray(evidence, dtype=np.float64)))
    if not blocks:
        raise ScorerArtifactError("the scorer reads nothing: every block weight is 0")
    return csr_matrix(hstack(blocks, format="csr"))


def fit_logistic_sparse(
    x: csr_matrix, y: npt.NDArray[np.bool_], *, l2: float = 1.0, iterations: int = 500
) -> tuple[FloatArray, float]:
    """Weights and intercept of a class-balanced L2 logistic regression, by L-BFGS.

    Newton's method (``fit_logistic``) needs the d x d Hessian; with hashed text columns d is
    tens of thousands, so the gradient-only L-BFGS solves the same convex problem. Deterministic.
    """
    n, d = x.shape
    if n == 0 or y.all() or not y.any():
        raise ValueError("training needs both positive and negative examples")
    target = y.astype(np.float64)
    pos = target.sum()
    weights = np.where(target > 0, n / (2 * pos), n / (2 * (n - pos)))

    def loss(beta: FloatArray) -> tuple[float, FloatArray]:
        z = x @ beta[:-1] + beta[-1]
        # log(1 + e^z) - y z, stable for large |z|
        value = weights @ (np.logaddexp(0.0, z) - target * z) + 0.5 * l2 * beta[:-1] @ beta[:-1]
        residual = weights * (_sigmoid(z) - target)
        grad = np.concatenate([x.T @ residual + l2 * beta[:-1], [residual.sum()]])
        return float(value), grad

    result = minimize(
        loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": iterations}
    )
    beta = np.asarray(result.x, dtype=np.float64)
    return beta[:-1].copy(), float(beta[-1])


@dataclass(frozen=True)
class LogisticScorer:
    """A calibrated linear scorer over embeddings."""

    coef: FloatArray
    intercept: float
    platt_a: float
    platt_b: float
    meta: ScorerMeta

    @property
    def reads_text(self) -> bool:
        """Whether the scorer needs the texts and evidence beside the embeddings."""
        return bool(self.meta.text_features or self.meta.evidence_features)

    def raw_scores(self, features: Features | npt.NDArray[np.floating[Any]]) -> FloatArray:
        if not isinstance(features, Features):
            features = Features(features)
        out: FloatArray = np.asarray(design_matrix(features, self.meta) @ self.coef)
        return out + self.intercept

    def probabilities(self, features: Features | npt.NDArray[np.floating[Any]]) -> FloatArray:
        """Calibrated probabilities; a bare array is the embeddings of an embedding-only scorer."""
        return _sigmoid(self.platt_a * self.raw_scores(features) + self.platt_b)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / WEIGHTS_FILE
        tmp = folder / f".{WEIGHTS_FILE}.tmp"
        with tmp.open("wb") as handle:
            np.savez(
                handle,
                coef=self.coef,
                intercept=np.array([self.intercept]),
                platt=np.array([self.platt_a, self.platt_b]),
            )
        tmp.replace(weights)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        meta = {**asdict(self.meta), "weights_sha256": digest}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path) -> LogisticScorer:
        weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
        if not weights.is_file() or not meta_path.is_file():
            raise ScorerArtifactError(
                f"no trained scorer in {folder}: run `pharmalane train` to build it"
            )
        meta = ScorerMeta(**json.loads(meta_path.read_text()))
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != meta.weights_sha256:
            raise ScorerArtifactError(
                f"{weights} does not match the checksum in {meta_path}: the file was changed "
                "or truncated; run `pharmalane train` to rebuild it"
            )
        with np.load(weights, allow_pickle=False) as arrays:
            coef = np.asarray(arrays["coef"], dtype=np.float64)
            intercept = float(arrays["intercept"][0])
            platt_a, platt_b = (float(v) for v in arrays["platt"])
        if coef.shape != (meta.width,):
            raise ScorerArtifactError(f"{weights}: coef shape {coef.shape} != ({meta.width},)")
        return cls(coef, intercept, platt_a, platt_b, meta)


def recall_curve(
    probs: FloatArray, y: npt.NDArray[np.bool_], bounds: npt.NDArray[np.float64]
) -> list[dict[str, float]]:
    """Recall and the share of items at or above each bound: the cost/recall trade-off."""
    positives = max(int(y.sum()), 1)
    return [
        {
            "threshold": float(b),
            "recall": float((probs[y] >= b).sum() / positives),
            "share_above": float((probs >= b).mean()),
        }
        for b in bounds
    ]


def train_calibrated(
    x_train: npt.NDArray[np.floating[Any]],
    y_train: npt.NDArray[np.bool_],
    x_cal: npt.NDArray[np.floating[Any]],
    y_cal: npt.NDArray[np.bool_],
    *,
    embedder: str,
    l2: float,
    target_recall: float,
    candidate_precision: float,
    training_info: dict[str, Any],
) -> LogisticScorer:
    """Fit on the train split, calibrate and choose thresholds on the calibration split."""
    coef, intercept = fit_logistic(x_train, y_train, l2=l2)
    # the same sparse product `raw_scores` takes (design_matrix): a dense BLAS product sums in
    # another order, and `low` sits one ulp below a calibration positive, so a recomputed
    # probability a few ulps lower would miss that positive (seen on another CPU)
    raw_cal = np.asarray(csr_matrix(np.asarray(x_cal, dtype=np.float64)) @ coef) + intercept
    platt_a, platt_b = fit_platt(raw_cal, y_cal)
    probs = _sigmoid(platt_a * raw_cal + platt_b)
    low, high = choose_thresholds(
        probs, y_cal, target_recall=target_recall, candidate_precision=candidate_precision
    )
    bounds = np.unique(np.concatenate([np.geomspace(1e-4, 1, 41), [low, high]]))
    meta = ScorerMeta(
        embedder=embedder,
        dimension=int(x_train.shape[1]),
        threshold_low=low,
        threshold_high=high,
        target_recall=target_recall,
        candidate_precision=candidate_precision,
        training={
            **training_info,
            "train_items": len(y_train),
            "train_positives": int(y_train.sum()),
            "calibration_items": len(y_cal),
            "calibration_positives": int(y_cal.sum()),
            "calibration_recall_at_low": float((probs[y_cal] >= low).mean()),
            "calibration_share_at_or_above_low": float((probs >= low).mean()),
        },
        calibration_curve=recall_curve(probs, y_cal, bounds),
    )
    return LogisticScorer(coef, intercept, platt_a, platt_b, meta)


def out_of_fold_scores(
    x: csr_matrix, y: npt.NDArray[np.bool_], folds: npt.NDArray[np.int64], *, l2: float
) -> FloatArray:
    """Raw score of every row from a model fitted without the row's fold (cross-validation).

    A threshold chosen on these scores is chosen on items no model saw, so it carries to new
    items better than one chosen on a dozen calibration positives.
    """
    scores = np.zeros(x.shape[0])
    for fold in np.unique(folds):
        held = folds == fold
        coef, intercept = fit_logistic_sparse(x[~held], y[~held], l2=l2)
        scores[held] = x[held] @ coef + intercept
    return scores


@dataclass(frozen=True)
class Recipe:
    """What the scorer reads and how it is fitted, chosen by measurement (bench/results)."""

    text_features: int
    evidence_features: list[str]
    block_weights: list[float]
    l2: float


def train_on_features(
    train: Features,
    y_train: npt.NDArray[np.bool_],
    cal: Features,
    y_cal: npt.NDArray[np.bool_],
    *,
    recipe: Recipe,
    meta: ScorerMeta,
    raw_low: float | None = None,
) -> LogisticScorer:
    """Fit ``recipe`` on the train split, Platt-calibrate on the calibration split.

    Args:
        train, y_train: the train split's inputs and labels.
        cal, y_cal: the calibration split's.
        recipe: the feature blocks and penalty.
        meta: embedder, dimension, targets and training notes; thresholds are set here.
        raw_low: a raw-score ``low`` chosen by cross-validation (``out_of_fold_scores``);
            without it ``low`` is chosen on the calibration split as ``train_calibrated`` does.
    """
    shell = replace(
        meta,
        text_features=recipe.text_features,
        evidence_features=list(recipe.evidence_features),
        block_weights=list(recipe.block_weights),
    )
    coef, intercept = fit_logistic_sparse(design_matrix(train, shell), y_train, l2=recipe.l2)
    raw_cal = np.asarray(design_matrix(cal, shell) @ coef) + intercept
    platt_a, platt_b = fit_platt(raw_cal, y_cal)
    probs = _sigmoid(platt_a * raw_cal + platt_b)
    low, high = choose_thresholds(
        probs, y_cal, target_recall=meta.target_recall, candidate_precision=meta.candidate_precision
    )
    if raw_low is not None:
        low = float(_sigmoid(np.array([platt_a * raw_low + platt_b]))[0])
    bounds = np.unique(np.concatenate([np.geomspace(1e-4, 1, 41), [low, high]]))
    final = replace(
        shell,
        threshold_low=low,
        threshold_high=max(high, low),
        training={
            **meta.training,
            "train_items": len(y_train),
            "train_positives": int(y_train.sum()),
            "calibration_items": len(y_cal),
            "calibration_positives": int(y_cal.sum()),
            "low_from": "cross-validation" if raw_low is not None else "calibration",
            "calibration_recall_at_low": float((probs[y_cal] >= low).mean()),
            "calibration_share_at_or_above_low": float((probs >= low).mean()),
        },
        calibration_curve=recall_curve(probs, y_cal, bounds),
    )
    return LogisticScorer(coef, intercept, platt_a, platt_b, final)
