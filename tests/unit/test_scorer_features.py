"""The scorer over embedding + hashed text + evidence: fitted, saved as arrays, reloaded."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from models.scorer import (
    Features,
    LogisticScorer,
    Recipe,
    ScorerArtifactError,
    ScorerMeta,
    design_matrix,
    fit_logistic,
    fit_logistic_sparse,
    out_of_fold_scores,
    train_on_features,
)
from models.text_features import hashed_counts
from tasks.core.screening_stats import threshold_at_recall

WORDS_POS = ["hepatotoxicity", "induced", "rash", "adverse", "reaction"]
WORDS_NEG = ["pharmacokinetics", "assay", "cohort", "dose", "plasma"]


def _items(n, seed):
    """Texts whose words (and one evidence flag) tell the label; embeddings are pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.25
    texts = [
        " ".join(rng.choice(WORDS_POS if label else WORDS_NEG, 6)) + " study of patients"
        for label in y
    ]
    evidence = np.column_stack([y & (rng.random(n) < 0.7), rng.random(n) < 0.5]).astype(float)
    return Features(rng.normal(size=(n, 4)), texts, evidence), y


def _meta():
    return ScorerMeta(
        embedder="e",
        dimension=4,
        threshold_low=0.0,
        threshold_high=1.0,
        target_recall=0.95,
        candidate_precision=0.8,
    )


RECIPE = Recipe(text_features=256, evidence_features=["a", "b"], block_weights=[1, 1, 1], l2=1.0)


def test_hashed_counts_are_stable_unit_rows():
    a = hashed_counts(["Drug induced liver injury", ""], 64)
    b = hashed_counts(["DRUG induced, liver   injury!"], 64)
    assert a.shape == (2, 64)
    np.testing.assert_allclose(np.sqrt(a[0].multiply(a[0]).sum()), 1.0)
    assert a[1].nnz == 0
    np.testing.assert_array_equal(a[0].toarray(), b[0].toarray())


def test_sparse_fit_agrees_with_newton_on_dense_data():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    x = rng.normal(size=(300, 5)) + np.where(y[:, None], 1.0, 0.0)
    dense_coef, dense_b = fit_logistic(x, y, l2=1.0)
    sparse_coef, sparse_b = fit_logistic_sparse(csr_matrix(x), y, l2=1.0)
    np.testing.assert_allclose(sparse_coef, dense_coef, atol=1e-3)
    assert sparse_b == pytest.approx(dense_b, abs=1e-3)


def test_text_and_evidence_carry_the_signal_and_the_artifact_round_trips(tmp_path):
    train, y_train = _items(400, 1)
    cal, y_cal = _items(300, 2)
    scorer = train_on_features(train, y_train, cal, y_cal, recipe=RECIPE, meta=_meta())
    probs = scorer.probabilities(cal)
    assert probs[y_cal].min() > probs[~y_cal].max()  # the words separate; noise vectors do not
    assert scorer.meta.width == 4 + 256 + 2
    scorer.save(tmp_path)
    loaded = LogisticScorer.load(tmp_path)
    np.testing.assert_allclose(loaded.probabilities(cal), probs)
    with pytest.raises(ScorerArtifactError, match="reads the text"):
        loaded.probabilities(cal.vectors)


def test_a_text_only_scorer_needs_no_embedding_and_cv_low_keeps_recall():
    train, y_train = _items(400, 3)
    cal, y_cal = _items(300, 4)
    text_only = Recipe(256, ["a", "b"], [0.0, 1.0, 1.0], 1.0)
    no_vectors = Features(np.zeros((400, 0)), train.texts, train.evidence)
    folds = np.arange(400) % 4
    shell = replace(
        _meta(), text_features=256, evidence_features=["a", "b"], block_weights=[0.0, 1.0, 1.0]
    )
    raw_low = threshold_at_recall(
        out_of_fold_scores(design_matrix(no_vectors, shell), y_train, folds, l2=1.0), y_train, 0.95
    )
    scorer = train_on_features(
        no_vectors, y_train, cal, y_cal, recipe=text_only, meta=_meta(), raw_low=raw_low
    )
    assert scorer.meta.width == 258
    assert scorer.meta.training["low_from"] == "cross-validation"
    probs = scorer.probabilities(cal)  # the scan's vectors are passed and ignored
    assert (probs[y_cal] >= scorer.meta.threshold_low).mean() >= 0.95
