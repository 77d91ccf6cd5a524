"""The escalation lane end to end: real lake in tmp_path, Prefect harness, a loopback server."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from prefect.settings import PREFECT_API_URL

from flows.escalation_lane import escalation_lane
from models.llm.local import free_port
from tasks.core.verdict import PROMPT_SHA256
from tasks.io.audit import AuditTrail
from tasks.io.lake import Lake
from tasks.schemas import DECISION, ESCALATION
from tasks.settings import load_settings
from tests.openai_stub import OpenAIStub, Reply, verdict_json

REPO = Path(__file__).resolve().parents[2]
ITEMS = {
    "101": ("Acute renal failure after cisplatin", "ade"),
    "102": ("Aspirin for secondary prevention of stroke", "no-ade"),
    "103": ("Ototoxicity of gentamicin in neonates", "bad-then-good"),
    "104": ("Heparin and platelet counts", "always-wrong-types"),
    "105": ("Lithium levels in elderly patients", "refusal"),
}


def responder_for():
    seen: dict[str, int] = {}

    def respond(body):
        user = body["messages"][1]["content"]  # the item; a retry appends a correction
        title, kind = next(v for v in ITEMS.values() if v[0] in user)
        seen[title] = seen.get(title, 0) + 1
        if kind == "ade":
            return Reply(verdict_json(True))
        if kind == "no-ade":
            return Reply(verdict_json(False))
        if kind == "bad-then-good":
            return Reply("{'single': quotes}") if seen[title] == 1 else Reply(verdict_json(True))
        if kind == "always-wrong-types":
            return Reply(verdict_json(True, suspect_drugs="heparin"))
        return Reply(None, refusal="I can't assist with that.")

    return respond


def escalations() -> pl.DataFrame:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return pl.DataFrame(
        [
            {
                "item_id": pmid,
                "content_hash": f"h{pmid}",
                "pub_date": date(2021, 3, 1),
                "pub_month": "2021-03",
                "title": title,
                "abstract": f"{title}. A patient report.",
                "products": ["cisplatin"],
                "route": "hot" if pmid == "105" else "warm",
                "probability": 0.2,
                "reason": "small model unsure",
                "run_id": "scan-run",
                "chunk_id": "chunk-x",
                "escalated_at": now,
            }
            for pmid, (title, _) in ITEMS.items()
        ]
    )


@pytest.fixture
def lane_home(isolated_home, tmp_path, monkeypatch):
    """A lake holding the scan's escalations (and its own decisions for them)."""
    monkeypatch.setenv("PHARMALANE_LADDER__LARGE_RECALL_DIR", str(tmp_path / "large_models"))
    lake = Lake(isolated_home / "lake")
    frame = escalations()
    lake.write("escalations", frame, ESCALATION, partition_by="pub_month", stem="scan")
    scan_rows = frame.with_columns(
        pl.lit("nightly-literature-scan").alias("workflow"),
        pl.lit("escalate").alias("path"),
        pl.lit("escalated").alias("decision"),
        pl.lit("minilm-scorer").alias("model"),
        pl.lit(0.0001).alias("cost_usd"),
        pl.col("escalated_at").alias("decided_at"),
    )
    lake.write("decisions", scan_rows, DECISION, partition_by="pub_month", stem="scan")
    return lake


def validated_recall(folder: Path, model: str, *, recall: float) -> None:
    """What `ladder-eval` leaves after measuring ``model`` with the current prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "prompt_sha256": PROMPT_SHA256, "positives": 40, "recall": recall}
    (folder / f"{model}.json").write_text(json.dumps(record))


def point_lane_at(url, tmp_path, monkeypatch, *, chunk_size=2, timeout_s=5):
    config = tmp_path / f"configs-{free_port()}"
    shutil.copytree(REPO / "configs", config)
    base = yaml.safe_load((config / "base.yaml").read_text())
    base["llm"]["model"] = "local-smollm2"
    base["llm"]["chunk_size"] = chunk_size
    base["llm"]["endpoints"]["local-smollm2"].update(
        base_url=url, timeout_s=timeout_s, max_retries=0
    )
    (config / "base.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(config))


@pytest.mark.slow
def test_lane_decides_every_item_never_accepts_bad_answers_and_pays_once(
    lane_home, tmp_path, monkeypatch
):
    validated_recall(tmp_path / "large_models", "local-smollm2", recall=1.0)
    with OpenAIStub(responder_for()) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        first = escalation_lane()
        calls_after_first = len(stub.requests)
        again = escalation_lane()

    assert first.pending == 5 and first.judged == 5 and first.deferred == 0
    lane = lane_home.read("decisions").filter(pl.col("workflow") == "escalation-lane")
    by_item = dict(zip(lane["item_id"], lane["decision"], strict=True))
    assert by_item == {
        "101": "case_candidate",
        "102": "closed_negative",
        "103": "case_candidate",
        "104": "human_review",
        "105": "human_review",
    }
    assert set(lane["path"]) == {"large"}
    assert "refus" in lane.filter(pl.col("item_id") == "105")["reason"][0]
    # the scan's own decisions are untouched beside the lane's
    assert lane_home.read("decisions").height == 10

    ledger = lane_home.read("ledger")
    # 101, 102: one call; 103: two; 104, 105: two rejected answers each
    assert ledger.height == calls_after_first == 8
    assert ledger["input_tokens"].sum() == 8 * 120 and ledger["output_tokens"].sum() == 8 * 40
    expected = 8 * (120 / 1000 * 0.00001 + 40 / 1000 * 0.0001)
    assert ledger["cost_usd"].sum() == pytest.approx(expected)
    assert lane["cost_usd"].sum() == pytest.approx(expected)

    cases = lane_home.read("cases")
    assert sorted(cases["item_id"]) == ["101", "103"]
    assert cases.filter(pl.col("item_id") == "101")["reactions"].to_list() == [["nephrotoxicity"]]

    assert again.pending == 0 and again.calls == 0 and again.already_decided == 5
    assert len(stub.requests) == calls_after_first
    assert lane_home.read("ledger").height == 8


@pytest.mark.slow
def test_a_backend_that_is_down_defers_items_and_a_later_run_decides_them(
    lane_home, tmp_path, monkeypatch
):
    point_lane_at(f"http://127.0.0.1:{free_port()}/v1", tmp_path, monkeypatch)
    down = escalation_lane(limit=4)
    assert down.stopped_early and down.deferred == 4 and down.calls == 0
    assert lane_home.read("decisions").filter(pl.col("workflow") == "escalation-lane").is_empty()
    assert lane_home.read("ledger").is_empty()

    with OpenAIStub(responder_for()) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        up = escalation_lane()
    assert up.pending == 5 and up.judged == 5 and up.deferred == 0


@pytest.mark.slow
def test_a_lane_killed_mid_chunk_resumes_without_paying_twice(lane_home, tmp_path, monkeypatch):
    """SIGKILL while the 4th call is in flight: the 3 answers already paid are replayed."""
    arrived = threading.Event()

    def respond(body):
        if len(stub.requests) == 4 and not arrived.is_set():
            arrived.set()
            return Reply(verdict_json(False), delay_s=60)  # in flight when the process dies
        return answers(body)

    answers = responder_for()
    with OpenAIStub(respond) as stub:
        # one chunk of 5, so nothing is written before the kill
        point_lane_at(stub.base_url, tmp_path, monkeypatch, chunk_size=5, timeout_s=120)
        process = subprocess.Popen(
            [sys.executable, "-c", "from flows.cli import app; app()", "escalate"],
            cwd=REPO,
            env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert arrived.wait(timeout=300), "the lane never reached its 4th call"
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert lane_home.read("ledger").is_empty()  # killed before the chunk's ledger write

        resumed = escalation_lane()

    # 8 answers in all (see the test above); 3 came back before the kill and are replayed
    assert resumed.replayed_calls == 3
    assert len(stub.requests) == 4 + 5
    ledger = lane_home.read("ledger")
    assert ledger.height == ledger["call_id"].n_unique() == 8
    per_call = 120 / 1000 * 0.00001 + 40 / 1000 * 0.0001  # local-smollm2's catalog price
    assert ledger["cost_usd"].sum() == pytest.approx(8 * per_call)
    lane = lane_home.read("decisions").filter(pl.col("workflow") == "escalation-lane")
    assert lane.height == 5 and lane["item_id"].n_unique() == 5


@pytest.mark.slow
def test_a_spent_lane_budget_decides_urgent_items_and_defers_the_rest(
    lane_home, tmp_path, monkeypatch
):
    with OpenAIStub(responder_for()) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        config = Path(os.environ["PHARMALANE_CONFIG_DIR"])
        budgets = yaml.safe_load((config / "budgets.yaml").read_text())
        lane_budget = next(b for b in budgets["budgets"] if b["workflow"] == "escalation-lane")
        lane_budget["usd"] = 0.000001
        (config / "budgets.yaml").write_text(yaml.safe_dump(budgets))
        spent = escalation_lane()
        asked_while_spent = len(stub.requests)

        lane_budget["usd"] = 1.0
        (config / "budgets.yaml").write_text(yaml.safe_dump(budgets))
        refilled = escalation_lane()

    # 105 is hot (urgent): it goes on over budget; the 4 others wait, nothing is lost
    decided = lane_home.read("decisions").filter(pl.col("workflow") == "escalation-lane")
    # chunk 1 (105 hot, 101): 105 asked twice (refusals), 101 deferred; chunk 2: all deferred,
    # so the lane stops there
    assert spent.stopped_early and spent.judged == 4 and spent.deferred == 4
    assert asked_while_spent == 2
    assert refilled.pending == 4 and refilled.deferred == 0
    assert sorted(decided["item_id"]) == ["101", "102", "103", "104", "105"]
    trail = AuditTrail(load_settings().audit_dir).entries()
    alerts = [e for e in trail if e["kind"] == "budget_exhausted"]
    assert {a["action"] for a in alerts} == {"defer", "continue_over_budget"}


@pytest.mark.slow
def test_a_model_whose_recall_is_not_validated_cannot_close_items(lane_home, tmp_path, monkeypatch):
    validated_recall(tmp_path / "large_models", "local-smollm2", recall=0.9)  # under 0.95
    with OpenAIStub(responder_for()) as stub:
        point_lane_at(stub.base_url, tmp_path, monkeypatch)
        escalation_lane()
    lane = lane_home.read("decisions").filter(pl.col("workflow") == "escalation-lane")
    no_event = lane.filter(pl.col("item_id") == "102")
    assert no_event["decision"].to_list() == ["human_review"]
    assert "UNVALIDATED_MODEL_CANNOT_CLOSE" in no_event["reason"][0]
    assert "closed_negative" not in lane["decision"].to_list()
