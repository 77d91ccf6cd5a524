"""`pharmalane train`'s text + evidence recipe end to end on a small labelled frame.

Real hashing, real evidence cues (the MeSH disease dictionary), cross-validated ``low``, the
artifact saved as arrays with its checksum and read back by the scan's scoring path.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tasks.services.runtime import Runtime
from tasks.services.scoring import probabilities
from tasks.services.training import fit_recipe
from tasks.settings import load_settings

POSITIVE = "Warfarin-induced hemorrhage in a 70-year-old man. We report a case after warfarin."
NEGATIVE = "Pharmacokinetics of warfarin in healthy volunteers: plasma assay and dose finding."


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    labels[:4] = True
    return pl.DataFrame(
        {
            "item_id": [f"{seed}-{i}" for i in range(n)],
            "title": [f"Report {i}" for i in range(n)],
            "abstract": [POSITIVE if y else NEGATIVE for y in labels],
            "products": [["warfarin"] if i % 2 else [] for i in range(n)],
            "label_ade": labels,
        }
    )


def test_text_and_evidence_recipe_trains_saves_and_scores(tmp_path):
    settings = load_settings(
        home=tmp_path / "home",
        scorer={"artifact_dir": tmp_path / "scorer"},
        train={"text_features": 1024, "evidence": True, "embedding_weight": 0.0, "cv_folds": 3},
    )
    runtime = Runtime.for_settings(settings)
    train, calibration = _frame(60, 1), _frame(40, 2)
    scorer = fit_recipe(
        runtime, train, np.zeros((60, 0)), calibration, np.zeros((40, 0), dtype=np.float32)
    )
    assert scorer.meta.training["low_from"] == "cross-validation"
    assert (tmp_path / "scorer" / "weights.npz").is_file()

    test = _frame(30, 3)
    vectors = np.zeros((30, runtime.embedder.dimension), dtype=np.float32)  # read, not used
    probs = probabilities(runtime, test, vectors)
    positives = test["label_ade"].to_numpy()
    assert probs[positives].min() > probs[~positives].max()
    meta = runtime.scorer().meta
    assert 0 < meta.threshold_low <= meta.threshold_high <= 1
    assert meta.width == 1024 + len(meta.evidence_features)
