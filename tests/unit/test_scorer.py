import json

import numpy as np
import pytest

from models.scorer import LogisticScorer, ScorerArtifactError, choose_thresholds, train_calibrated


def _separable(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    x = rng.normal(size=(n, d)) + np.where(y[:, None], 1.5, 0.0)
    return x, y


def test_trained_scorer_ranks_positives_higher_and_meets_recall_target():
    x, y = _separable()
    xc, yc = _separable(seed=1)
    scorer = train_calibrated(
        x,
        y,
        xc,
        yc,
        embedder="e",
        l2=1.0,
        target_recall=0.95,
        candidate_precision=0.8,
        training_info={},
    )
    probs = scorer.probabilities(xc)
    assert probs[yc].mean() > probs[~yc].mean() + 0.3
    assert (probs[yc] >= scorer.meta.threshold_low).mean() >= 0.95
    assert scorer.meta.threshold_low <= scorer.meta.threshold_high


def test_choose_thresholds_allows_exactly_the_permitted_misses():
    probs = np.array([0.05, 0.1, 0.2, 0.3, 0.9, 0.8, 0.01, 0.02])
    y = np.array([True, True, True, True, True, True, False, False])
    low, high = choose_thresholds(probs, y, target_recall=0.8, candidate_precision=1.0)
    assert (probs[y] >= low).sum() == 5  # floor(0.2 * 6) = 1 miss allowed
    assert high == pytest.approx(low)  # a candidate bound below low is raised to low
    low, high = choose_thresholds(probs, y, target_recall=1.0, candidate_precision=1.0)
    assert (probs[y] >= low).all()
    assert high == pytest.approx(0.05)  # every item from 0.05 up is positive


def test_artifact_round_trip_and_tamper_detection(tmp_path):
    x, y = _separable()
    scorer = train_calibrated(
        x,
        y,
        x,
        y,
        embedder="e",
        l2=1.0,
        target_recall=0.9,
        candidate_precision=0.9,
        training_info={},
    )
    scorer.save(tmp_path)
    loaded = LogisticScorer.load(tmp_path)
    np.testing.assert_allclose(loaded.probabilities(x), scorer.probabilities(x))
    weights = tmp_path / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ScorerArtifactError, match="checksum"):
        LogisticScorer.load(tmp_path)


def test_missing_artifact_says_how_to_build_it(tmp_path):
    with pytest.raises(ScorerArtifactError, match="pharmalane train"):
        LogisticScorer.load(tmp_path)


def test_shipped_scorer_is_intact_and_matches_the_packaged_embedder_dimension():
    from tasks.settings import load_settings

    folder = load_settings().scorer.artifact_dir
    scorer = LogisticScorer.load(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert scorer.meta.dimension == 384 == meta["dimension"]
    assert meta["training"]["calibration_recall_at_low"] >= meta["target_recall"]
