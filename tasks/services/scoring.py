"""The small model's inputs beside the embedding: the text and its evidence cues.

One place builds what the scorer reads of a frame of items (embedding, title + abstract,
evidence vector) so the scan, the evaluation, the ladder and training score alike, and the
evidence codes that go into each decision's reason.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models.scorer import Features, LogisticScorer
from tasks.io.drug_dictionary import product_variants
from tasks.io.entities import reaction_spans
from tasks.services.embedding import texts_of
from tasks.services.runtime import Runtime
from tasks.tools.evidence import FEATURE_NAMES, Evidence, evidence


def item_evidence(runtime: Runtime, frame: pl.DataFrame) -> list[Evidence]:
    """The evidence cues of every row of ``frame`` (title, abstract, products), in row order."""
    variants = product_variants(p.name for p in runtime.rules.products.products)
    out = []
    for title, abstract, products in frame.select("title", "abstract", "products").iter_rows():
        names = [v for product in products or [] for v in variants.get(product, (product,))]
        out.append(evidence(title or "", abstract or "", names, reaction_spans))
    return out


def evidence_matrix(found: list[Evidence]) -> np.ndarray:
    """One row of 0/1 per item, columns in ``FEATURE_NAMES`` order."""
    rows = [e.vector() for e in found]
    return np.array(rows, dtype=np.float64).reshape(len(found), len(FEATURE_NAMES))


def scorer_features(
    scorer: LogisticScorer,
    frame: pl.DataFrame,
    vectors: np.ndarray,
    found: list[Evidence] | None = None,
) -> Features:
    """What ``scorer`` reads of ``frame``: the text and evidence only if it was trained on them."""
    if not scorer.reads_text:
        return Features(vectors)
    if found is None:
        raise ValueError("this scorer reads evidence: pass item_evidence(runtime, frame)")
    return Features(vectors, texts_of(frame), evidence_matrix(found))


def probabilities(runtime: Runtime, frame: pl.DataFrame, vectors: np.ndarray) -> np.ndarray:
    """The scorer's calibrated probability of every row of ``frame`` (vectors in row order)."""
    scorer = runtime.scorer()
    found = item_evidence(runtime, frame) if scorer.reads_text else None
    return scorer.probabilities(scorer_features(scorer, frame, vectors, found))
