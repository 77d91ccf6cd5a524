"""`pharmalane calibrate` and `ladder-eval` on the real calibration split, in tmp_path.

The large model is a loopback OpenAI-compatible server with scripted answers, so the
comparison's logic can be checked against what the model is known to have said.
"""

from __future__ import annotations

import json

import pytest

from flows.calibrate_ladder import calibrate_ladder
from flows.ladder_eval import ladder_eval
from tasks.core.verdict import PROMPT_SHA256
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.flows.test_escalation_lane import point_lane_at
from tests.openai_stub import OpenAIStub, Reply, verdict_json

pytestmark = pytest.mark.slow
SAMPLE = 10


@pytest.fixture
def ladder_home(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PHARMALANE_LADDER__CHOICE_FILE", str(tmp_path / "calibration.json"))
    monkeypatch.setenv("PHARMALANE_LADDER__LARGE_RECALL_DIR", str(tmp_path / "large_models"))
    return isolated_home


def test_calibration_meets_its_recall_target_and_is_used_only_with_its_scorer(ladder_home):
    summary = calibrate_ladder(limit=500)
    settings = load_settings()
    stored = json.loads(settings.ladder.choice_file.read_text())

    assert summary.small_recall_at_low >= settings.ladder.target_recall
    assert 0 < summary.low <= summary.high <= 1
    assert summary.cost_ratio == pytest.approx(
        summary.expected_usd_per_1k_items / summary.all_large_usd_per_1k_items
    )
    recalls = [row["recall"] for row in sorted(stored["curve"], key=lambda r: r["low"])]
    assert recalls == sorted(recalls, reverse=True)  # a higher low never finds more positives
    assert stored["scorer_sha256"] == Runtime.for_settings(settings).scorer().meta.weights_sha256

    chosen = Runtime.for_settings(settings).thresholds()
    assert (chosen.source, chosen.thresholds.low) == ("calibration", summary.low)

    stored["scorer_sha256"] = "0" * 64  # a calibration made for some other scorer
    settings.ladder.choice_file.write_text(json.dumps(stored))
    fallback = Runtime.for_settings(settings).thresholds()
    assert fallback.source == "scorer" and "another scorer" in fallback.note
    assert fallback.thresholds.low == Runtime.for_settings(settings).scorer().meta.threshold_low


def test_ladder_eval_with_a_model_that_always_flags(ladder_home, tmp_path, monkeypatch):
    with OpenAIStub(lambda _: Reply(verdict_json(True))) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        result = ladder_eval(split="calibration", sample=SAMPLE, out_dir=tmp_path)
        asked = len(stub.requests)
        again = ladder_eval(split="calibration", sample=SAMPLE, out_dir=tmp_path)

    assert (
        json.loads((tmp_path / "ladder_eval.json").read_text())["measured_sample"]
        == (result["measured_sample"])
    )
    assert (tmp_path / "ladder_eval.png").stat().st_size > 10_000
    measured = result["measured_sample"]
    paths = measured["paths"]
    assert asked == SAMPLE and measured["sample"] == SAMPLE
    assert paths["all_large"]["flagged"] == SAMPLE
    assert paths["all_large"]["true_positives"] == measured["sample_positives"]
    # a large model that flags everything it sees: the cascade flags exactly what the small
    # model lets through, and pays for the escalated share only
    assert paths["cascade"]["flagged"] == paths["all_small"]["flagged"]
    assert (
        paths["cascade"]["cost_usd"]
        <= paths["all_large"]["cost_usd"] + (paths["all_small"]["cost_usd"])
    )
    assert measured["measured_large_usd_on_sample"] > 0
    # its recall is kept for the lane's policy, but 10 items are too few to let it close any
    record = json.loads((tmp_path / "large_models" / "local-smollm2.json").read_text())
    assert record["prompt_sha256"] == PROMPT_SHA256 and record["sample"] == SAMPLE
    assert measured["validated_to_close"] is False

    # stored verdicts are reused: a re-run asks nothing and reports the same
    assert again["measured_sample"] == measured
    ledger = Runtime.for_settings(load_settings()).lake.read("ledger")
    assert ledger.filter(ledger["workflow"] == "ladder-eval").height >= SAMPLE


def test_ladder_eval_counts_rejected_answers_as_flagged_never_as_negatives(
    ladder_home, tmp_path, monkeypatch
):
    with OpenAIStub(lambda _: Reply("I think this might be an adverse event.")) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        result = ladder_eval(split="calibration", sample=SAMPLE, out_dir=tmp_path)

    measured = result["measured_sample"]
    assert len(stub.requests) == 2 * SAMPLE  # every item asked once more, then sent to a human
    assert measured["human_review"] == SAMPLE
    assert measured["paths"]["all_large"]["flagged"] == SAMPLE
