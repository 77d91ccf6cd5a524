"""Large-model calls paid once and within budget: the journal on real SQLite, calls to a real
loopback server, budgets in the supervisor's real SQLite store."""

import socket
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from models.llm import ChatResult, LLMUnavailable
from models.llm.openai_http import FallbackLLM, OpenAICompatibleLLM
from tasks.errors import ConfigError
from tasks.io.audit import AuditTrail
from tasks.io.call_journal import CallJournal, call_key
from tasks.rules import load_budgets
from tasks.services.runtime import Runtime
from tasks.services.supervisor import BudgetDeferred, SupervisedLLM
from tasks.settings import load_settings
from tests.openai_stub import OpenAIStub, Reply, verdict_json

MESSAGES = [{"role": "system", "content": "judge"}, {"role": "user", "content": "Title: x"}]


def test_journal_keeps_answers_across_connections_and_never_overwrites(tmp_path):
    path = tmp_path / "calls.sqlite"
    first = ChatResult("{}", 120, 40, "m", "stop", None, "local-qwen")
    key = call_key("local-qwen", MESSAGES, {"type": "object"}, 384)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    CallJournal(path).put(key, first, now)
    CallJournal(path).put(key, ChatResult("other", 1, 1, "m"), now)  # the same call again

    reopened = CallJournal(path)
    assert reopened.get(key) == first
    assert reopened.count() == 1
    assert reopened.get(call_key("local-qwen", MESSAGES, {"type": "object"}, 385)) is None
    assert reopened.get(call_key("local-smollm2", MESSAGES, {"type": "object"}, 384)) is None
    assert reopened.prune(now + timedelta(days=1), keep=timedelta(days=2)) == 0
    assert reopened.prune(now + timedelta(days=3), keep=timedelta(days=2)) == 1
    assert reopened.get(key) is None


def _config(tmp_path, monkeypatch, *, budget_usd: float) -> None:
    """The repo's configs with a tiny escalation-lane budget, in PHARMALANE_HOME=tmp_path."""
    from tests.flows.test_escalation_lane import REPO

    config = tmp_path / "configs"
    config.mkdir()
    for f in (REPO / "configs").glob("*.yaml"):
        (config / f.name).write_text(f.read_text())
    budgets = yaml.safe_load((config / "budgets.yaml").read_text())
    for b in budgets["budgets"]:
        if b["workflow"] == "escalation-lane":
            b["usd"] = budget_usd
    (config / "budgets.yaml").write_text(yaml.safe_dump(budgets))
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(config))
    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "home"))


def _served(url: str) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(url, "stub", name="local-smollm2", timeout_s=5, max_retries=0)


def test_an_answered_question_is_replayed_not_paid_again(tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, budget_usd=1.0)
    settings = load_settings()
    with OpenAIStub(lambda _: Reply(verdict_json(True))) as stub:
        first = SupervisedLLM(
            _served(stub.base_url), Runtime.for_settings(settings), workflow="escalation-lane"
        )
        answer = first.chat(MESSAGES, schema={"type": "object"}, max_tokens=64)
        # a new process would build a new wrapper: the journal is what remembers
        again = SupervisedLLM(
            _served(stub.base_url), Runtime.for_settings(settings), workflow="escalation-lane"
        )
        replay = again.chat(MESSAGES, schema={"type": "object"}, max_tokens=64)
        other = again.chat(MESSAGES, schema={"type": "object"}, max_tokens=65)

    assert len(stub.requests) == 2
    assert replay == answer and other.text == answer.text
    assert (first.called, first.replayed, again.called, again.replayed) == (1, 0, 1, 1)
    assert Runtime.for_settings(settings).journal.count() == 2


def test_a_spent_budget_defers_the_call_except_urgent_work_and_raises_an_alert(
    tmp_path, monkeypatch
):
    _config(tmp_path, monkeypatch, budget_usd=0.000001)
    settings = load_settings()
    with OpenAIStub(lambda _: Reply(verdict_json(True))) as stub:
        lane = SupervisedLLM(
            _served(stub.base_url), Runtime.for_settings(settings), workflow="escalation-lane"
        )
        with pytest.raises(BudgetDeferred, match="budget spent"):
            lane.for_item(urgent=False).chat(MESSAGES, max_tokens=64)
        assert stub.requests == []
        urgent = lane.for_item(urgent=True).chat(MESSAGES, max_tokens=64)
    assert urgent.input_tokens == 120 and len(stub.requests) == 1

    entries = AuditTrail(settings.audit_dir).entries()
    alerts = [e for e in entries if e["kind"] == "budget_exhausted"]
    assert [a["action"] for a in alerts] == ["defer", "continue_over_budget"]
    assert {a["workflow"] for a in alerts} == {"escalation-lane"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _escalation_spend(settings):

    budget = load_budgets(settings).budget("escalation-lane")
    return Runtime.for_settings(settings).budgets.spend(budget, datetime.now(UTC))


def test_a_fallback_chain_is_reserved_at_its_dearest_model(tmp_path, monkeypatch):
    # the attack: the estimate used the cheap primary's price, the call ended on the dear
    # fallback and was booked at its own rate: more than was reserved, past the budget
    _config(tmp_path, monkeypatch, budget_usd=0.01)
    settings = load_settings()
    down = OpenAICompatibleLLM(
        f"http://127.0.0.1:{_closed_port()}/v1",
        "stub",
        name="local-smollm2",
        timeout_s=5,
        max_retries=0,
    )
    answered = deferred = 0
    with OpenAIStub(lambda _: Reply(verdict_json(True))) as stub:
        up = OpenAICompatibleLLM(stub.base_url, "stub", name="large-hosted", max_retries=0)
        lane = SupervisedLLM(
            FallbackLLM([down, up]), Runtime.for_settings(settings), workflow="escalation-lane"
        )
        assert lane.may_serve == ("local-smollm2", "large-hosted")
        for i in range(20):
            question = [*MESSAGES, {"role": "user", "content": f"item {i}"}]
            try:
                assert lane.chat(question, max_tokens=64).served_by == "large-hosted"
                answered += 1
            except BudgetDeferred:
                deferred += 1
    spend = _escalation_spend(settings)
    assert spend.committed_usd <= 0.01  # before: 15 calls answered, $0.0105 on $0.01
    assert answered == len(stub.requests) and answered > 0 and deferred > 0
    # 120 prompt + 40 completion tokens at the hosted price, each call settled in full
    assert spend.settled_usd == pytest.approx(answered * (0.120 * 0.0025 + 0.040 * 0.01))
    assert (spend.overages, spend.overrides) == (0, 0)


def test_a_failed_call_may_have_been_billed_so_it_settles_at_its_estimate(tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, budget_usd=1.0)
    settings = load_settings()
    down = OpenAICompatibleLLM(
        f"http://127.0.0.1:{_closed_port()}/v1", "stub", name="large-hosted", max_retries=0
    )
    with pytest.raises(LLMUnavailable):
        SupervisedLLM(down, Runtime.for_settings(settings), workflow="escalation-lane").chat(
            MESSAGES, max_tokens=64
        )
    spend = _escalation_spend(settings)
    assert spend.settled_usd > 0.064 * 0.01  # at least every output token at the hosted price
    assert spend.reserved_usd == 0.0


def test_a_model_without_a_price_is_refused_before_any_call(tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, budget_usd=1.0)
    unpriced = OpenAICompatibleLLM("http://127.0.0.1:9/v1", "stub", name="no-such-model")
    with pytest.raises(ConfigError, match="no-such-model"):
        SupervisedLLM(unpriced, Runtime.for_settings(load_settings()), workflow="escalation-lane")
