"""`pharmalane eval` on a real labelled slice: metrics agree with the label and are written."""

from __future__ import annotations

import json

import pytest

from flows.evaluate_scan import evaluate_scan

pytestmark = pytest.mark.slow


def test_evaluation_counts_and_writes_its_metrics(isolated_home, tmp_path):
    metrics = evaluate_scan(split="calibration", limit=60, results_dir=str(tmp_path))

    written = json.loads((tmp_path / "eval_calibration.json").read_text())
    assert written["items"] == metrics["items"] > 0
    assert metrics["items"] <= 60 and metrics["split"] == "calibration"
    scope = metrics["in_scope"]
    assert scope["items"] <= metrics["items"] and scope["positives"] <= metrics["positives"]
    shares = metrics["cascade_all_items"]["path_share"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    if scope["positives"]:
        assert scope["recall"] == pytest.approx(
            1 - len(scope["missed_positives"]) / scope["positives"], abs=1e-3
        )
    low = metrics["thresholds"]["low"]
    assert 0 < low <= metrics["thresholds"]["high"] <= 1
