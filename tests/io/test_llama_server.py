"""The HTTP backend and the batch-file backend against llama.cpp's real server (SmolLM2)."""

import json

import pytest

from models.llm import batch
from models.llm.local import smollm2_gguf
from models.llm.openai_http import OpenAICompatibleLLM
from tasks.core.verdict import messages_for, verdict_schema

pytestmark = pytest.mark.slow
TITLE = "Fatal agranulocytosis after chloramphenicol"
ABSTRACT = "A 40-year-old woman died of agranulocytosis after oral chloramphenicol."


def test_the_packaged_model_is_a_gguf_file():
    path = smollm2_gguf()
    assert path.read_bytes()[:4] == b"GGUF"


def test_json_constrained_chat_returns_json_with_real_usage(smollm2_server):
    # structured="json": llama-cpp-python samples a full schema grammar at ~0.5 s per token
    # here (minutes per verdict); the request shape of "schema" mode is tested on the stub.
    llm = OpenAICompatibleLLM(
        smollm2_server, "smollm2", name="local-smollm2", structured="json", timeout_s=600
    )
    result = llm.chat(
        messages_for(TITLE, ABSTRACT, ["chloramphenicol"]), schema=verdict_schema(), max_tokens=48
    )
    assert result.input_tokens > 100 and 0 < result.output_tokens <= 48
    assert result.served_by == "local-smollm2"
    assert result.text.lstrip().startswith("{")  # JSON-constrained decoding
    if result.finish_reason == "stop":
        assert isinstance(json.loads(result.text), dict)
    else:
        assert result.finish_reason == "length"  # cut at max_tokens: judge() would refuse it


def test_a_batch_file_round_trips_through_an_openai_compatible_executor(smollm2_server, tmp_path):
    requests = [
        batch.request(
            f"item-{i}", "smollm2", messages_for(t, t, ["aspirin"]), schema=None, max_tokens=8
        )
        for i, t in enumerate(["Aspirin and Reye syndrome", "Aspirin in stroke prevention"])
    ]
    inputs = batch.write_requests(requests, tmp_path / "in.jsonl")
    lines = [json.loads(x) for x in inputs.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["item-0", "item-1"]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    assert lines[0]["body"]["messages"][0] == lines[1]["body"]["messages"][0]  # shared prefix

    root = smollm2_server.removesuffix("/v1")
    assert batch.run_over_http(inputs, tmp_path / "out.jsonl", root) == 2
    results = batch.read_results(tmp_path / "out.jsonl", model="smollm2")
    assert sorted(results) == ["item-0", "item-1"]
    for result in results.values():
        assert not isinstance(result, Exception)
        assert result.input_tokens > 50 and 0 < result.output_tokens <= 8


def test_batch_lines_that_failed_are_reported_per_item(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps({"custom_id": "a", "response": None, "error": {"message": "oom"}})
        + "\n"
        + json.dumps({"custom_id": "b", "response": {"status_code": 200, "body": {"choices": []}}})
        + "\n"
    )
    results = batch.read_results(out, model="m")
    assert "oom" in str(results["a"]) and "no choices" in str(results["b"])


def test_duplicate_custom_ids_are_refused(tmp_path):
    r = batch.BatchRequest("same", {})
    with pytest.raises(ValueError, match="unique"):
        batch.write_requests([r, r], tmp_path / "in.jsonl")
