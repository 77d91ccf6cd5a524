"""Benchmark: how far a better small model could cut the cascade's escalations.

The cascade's cost against all-large is about the share of in-scope items the small model
escalates. This measures that share at a recall target for the shipped feature (MiniLM
embedding + logistic) and for the alternatives tried: word/bigram TF-IDF + logistic, both
features together, and training only on items that are alike in-scope ones. Thresholds are
set on all positives of each split (the in-scope ones alone are 12 on calibration).

Run with `make bench` (or `pytest -m bench tests/bench/test_small_model_ceiling.py -o
addopts=""`). Uses PHARMALANE_HOME's stored vectors (embeds what is missing, paying once).
Writes bench/results/small_model_ceiling.json.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from prefect import flow
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tasks.services.embedding import texts_of
from tasks.services.intake import source_files
from tasks.services.runtime import utcnow
from tasks.settings import load_settings
from tasks.steps.scan import load_citations, select_window, tools_and_route, validate
from tasks.steps.training import embed_split

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
SPLITS = ("train", "calibration", "test")
TARGETS = (0.95, 0.98)


@flow(name="bench-small-model-ceiling")
def labelled_split_vectors() -> tuple[pl.DataFrame, np.ndarray]:
    settings = load_settings()
    citations, _ = load_citations(source_files(None), settings.cache_dir)
    frames, vectors = [], []
    for split in SPLITS:
        valid = validate(select_window(citations, None, None, split, None), settings).valid
        rows = tools_and_route(valid, settings).sort("item_id")
        run_id = str(uuid.uuid4())
        vectors.append(
            embed_split(rows, settings, workflow="train-scorer", run_id=run_id, now=utcnow())
        )
        frames.append(rows.with_columns(pl.lit(split).alias("split")))
    return pl.concat(frames, how="diagonal_relaxed"), np.concatenate(vectors)


def at_recall(p: np.ndarray, y: np.ndarray, scope: np.ndarray, target: float) -> dict[str, float]:
    """In-scope share at or above the highest threshold keeping ``target`` of all positives."""
    low = float(np.quantile(p[y], 1 - target, method="lower"))
    return {
        "low": low,
        "in_scope_share_escalated_or_kept": float((p[scope] >= low).mean()),
        "in_scope_recall": float((p[scope & y] >= low).mean()),
        "recall_all_positives": float((p[y] >= low).mean()),
    }


@pytest.mark.bench
@pytest.mark.timeout(3600)  # a benchmark runs for minutes; an hour means it hangs
def test_small_model_ceiling():
    rows, embedded = labelled_split_vectors()
    y = rows["label_ade"].to_numpy().astype(bool)
    split = rows["split"].to_numpy()
    scope = (rows["products"].list.len() > 0).to_numpy()
    like_scope = (rows["chemicals"].str.len_chars() > 0).to_numpy()  # MeSH substances indexed
    train = split == "train"

    tfidf = TfidfVectorizer(
        ngram_range=(1, 2), min_df=3, sublinear_tf=True, max_features=200_000, stop_words="english"
    )
    texts = texts_of(rows)
    tfidf.fit([t for t, is_train in zip(texts, train, strict=True) if is_train])
    words = tfidf.transform(texts)
    features: dict[str, Any] = {
        "minilm": embedded.astype(np.float64),
        "tfidf": words,
        "minilm+tfidf": hstack([words, csr_matrix(embedded.astype(np.float64))]).tocsr(),
    }
    results: dict[str, Any] = {
        "items": {s: int((split == s).sum()) for s in SPLITS},
        "positives": {s: int((y & (split == s)).sum()) for s in SPLITS},
        "in_scope": {s: int((scope & (split == s)).sum()) for s in SPLITS},
        "in_scope_positives": {s: int((scope & y & (split == s)).sum()) for s in SPLITS},
        "models": {},
    }
    for name, x in features.items():
        for trained_on, rows_used in (("all", train), ("mesh-substances", train & like_scope)):
            model = LogisticRegression(
                C=1.0, class_weight="balanced", max_iter=3000, solver="liblinear"
            )
            model.fit(x[rows_used], y[rows_used])
            p = model.predict_proba(x)[:, 1]
            entry: dict[str, Any] = {"train_items": int(rows_used.sum())}
            for s in ("calibration", "test"):
                m = split == s
                entry[s] = {
                    "in_scope_auc": float(roc_auc_score(y[m & scope], p[m & scope])),
                    **{f"at_recall_{t}": at_recall(p[m], y[m], scope[m], t) for t in TARGETS},
                }
            results["models"][f"{name} / trained on {trained_on}"] = entry

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "small_model_ceiling.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results["models"].items():
        for s in ("calibration", "test"):
            share = entry[s]["at_recall_0.95"]["in_scope_share_escalated_or_kept"]
            assert 0.0 < share <= 1.0, (name, s)
