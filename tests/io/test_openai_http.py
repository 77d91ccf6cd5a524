"""The HTTP backend and the verdict loop against a loopback OpenAI wire-protocol server."""

import pytest

from models.llm import LLMBadResponse, LLMUnavailable
from models.llm.local import free_port
from models.llm.openai_http import FallbackLLM, OpenAICompatibleLLM
from tasks.core.judge import judge
from tests.openai_stub import OpenAIStub, Reply, scripted, verdict_json

MESSAGES = [{"role": "user", "content": "hello"}]


def client(url, **kw):
    kw.setdefault("sleep", lambda s: None)
    return OpenAICompatibleLLM(url, "stub-model", name="local-smollm2", **kw)


def ask(llm):
    return judge(
        llm, item_id="pmid-9", title="T", abstract="A", products=["cisplatin"], max_tokens=64
    )


def test_a_chat_returns_text_usage_and_who_served_it():
    with OpenAIStub(scripted(Reply(verdict_json()))) as stub:
        result = client(stub.base_url).chat(MESSAGES, schema={"type": "object"}, max_tokens=32)
    assert (result.input_tokens, result.output_tokens, result.served_by) == (
        120,
        40,
        "local-smollm2",
    )
    body = stub.requests[0]
    assert body["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert body["max_tokens"] == 32 and body["temperature"] == 0.0


def test_transient_errors_are_retried_with_backoff_then_succeed():
    waits = []
    replies = scripted(Reply(status=503, raw="busy"), Reply(status=429, raw="slow"), Reply("{}"))
    with OpenAIStub(replies) as stub:
        result = client(stub.base_url, max_retries=2, backoff_s=0.1, sleep=waits.append).chat(
            MESSAGES
        )
    assert result.text == "{}" and len(stub.requests) == 3
    assert waits == [0.1, 0.2]


def test_a_client_error_is_not_retried():
    stub = OpenAIStub(scripted(Reply(status=400, raw='{"error": "bad schema"}')))
    with stub, pytest.raises(LLMBadResponse, match="HTTP 400"):
        client(stub.base_url, max_retries=3).chat(MESSAGES)
    assert len(stub.requests) == 1


def test_a_response_without_usage_cannot_be_priced_and_is_refused():
    stub = OpenAIStub(scripted(Reply(verdict_json(), usage=None)))
    with stub, pytest.raises(LLMBadResponse, match="no usage"):
        client(stub.base_url).chat(MESSAGES)


def test_a_timeout_is_retried_then_reported_unavailable():
    stub = OpenAIStub(scripted(Reply(verdict_json(), delay_s=1.0)))
    with stub, pytest.raises(LLMUnavailable, match=r"timed out \(ReadTimeout\) after 2 attempts"):
        client(stub.base_url, timeout_s=0.2, max_retries=1).chat(MESSAGES)


def test_a_backend_that_is_down_is_unavailable_and_the_chain_falls_back():
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailable, match="cannot be reached"):
        client(down, max_retries=1).chat(MESSAGES)
    with OpenAIStub(scripted(Reply("{}"))) as stub:
        backup = OpenAICompatibleLLM(stub.base_url, "m", name="large-hosted")
        result = FallbackLLM([client(down, max_retries=0), backup]).chat(MESSAGES)
    assert result.served_by == "large-hosted"


def test_a_malformed_answer_is_asked_once_more_and_a_good_second_answer_wins():
    with OpenAIStub(
        scripted(Reply('{"is_adverse_drug_event": "yes"'), Reply(verdict_json()))
    ) as stub:
        judged = ask(client(stub.base_url))
    assert judged.outcome == "verdict" and judged.verdict.reactions == ["nephrotoxicity"]
    assert [c.attempt for c in judged.calls] == [1, 2]
    assert "invalid_json" in judged.failures[0]
    retry = stub.requests[1]["messages"]
    assert retry[:2] == stub.requests[0]["messages"]
    assert retry[2] == {"role": "assistant", "content": '{"is_adverse_drug_event": "yes"'}
    assert "rejected (invalid_json: not JSON" in retry[3]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        Reply("not json at all"),
        Reply(verdict_json(is_adverse_drug_event="true")),
        Reply(verdict_json(seriousness="serious")),
        Reply(""),
        Reply(None, refusal="I cannot help with medical questions."),
        Reply(verdict_json(reactions=[])),
    ],
    ids=["invalid-json", "wrong-type-bool", "wrong-type-list", "empty", "refusal", "inconsistent"],
)
def test_two_bad_answers_go_to_human_review_and_both_calls_are_charged(reply):
    with OpenAIStub(scripted(reply)) as stub:
        judged = ask(client(stub.base_url))
    assert judged.verdict is None and judged.outcome == "human_review"
    assert len(judged.calls) == 2 and judged.input_tokens == 240 and len(judged.failures) == 2


def test_a_backend_down_or_timing_out_defers_the_item_instead_of_deciding_it():
    down = f"http://127.0.0.1:{free_port()}/v1"
    judged = ask(client(down, max_retries=0))
    assert judged.outcome == "deferred" and judged.calls == []
    with OpenAIStub(scripted(Reply(verdict_json(), delay_s=1.0))) as stub:
        judged = ask(client(stub.base_url, timeout_s=0.2, max_retries=0))
    assert judged.outcome == "deferred"


def test_json_mode_constrains_syntax_only_and_sends_no_schema():
    with OpenAIStub(scripted(Reply("{}"))) as stub:
        client(stub.base_url, structured="json").chat(MESSAGES, schema={"type": "object"})
    assert stub.requests[0]["response_format"] == {"type": "json_object"}
