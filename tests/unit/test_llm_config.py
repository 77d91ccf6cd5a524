"""The verdict model is built from settings and the price catalog, or refused with a reason."""

import pytest

from models.llm.openai_http import FallbackLLM
from tasks.errors import ConfigError
from tasks.services.runtime import Runtime
from tasks.settings import LLMEndpoint, LLMSettings, load_settings

HOSTED = LLMEndpoint(base_url="https://gw.invalid/v1", model="gpt-4o", api_key_env="PL_TEST_KEY")
LOCAL = LLMEndpoint(base_url="http://127.0.0.1:1/v1", model="q", structured="json")


def settings_with(**llm_fields):
    return load_settings(llm=LLMSettings(**llm_fields))


def test_a_hosted_model_needs_its_key_in_the_environment(monkeypatch):
    monkeypatch.delenv("PL_TEST_KEY", raising=False)
    s = settings_with(model="large-hosted", endpoints={"large-hosted": HOSTED})
    with pytest.raises(ConfigError, match=r"\$PL_TEST_KEY"):
        _ = Runtime.for_settings(s).llm
    monkeypatch.setenv("PL_TEST_KEY", "sk-test-not-logged")
    backend = Runtime.for_settings(s).llm
    assert backend.name == "large-hosted" and "sk-test" not in repr(backend)


def test_an_unpriced_or_unrouted_model_is_refused():
    with pytest.raises(ConfigError, match="no price"):
        _ = Runtime.for_settings(
            settings_with(model="free-lunch", endpoints={"free-lunch": LOCAL})
        ).llm
    with pytest.raises(ConfigError, match="no endpoint"):
        _ = Runtime.for_settings(settings_with(model="local-qwen", endpoints={})).llm


def test_fallback_keys_build_a_chain_in_order(monkeypatch):
    monkeypatch.setenv("PL_TEST_KEY", "k")
    s = settings_with(
        model="local-qwen",
        fallback=["large-hosted"],
        endpoints={"local-qwen": LOCAL, "large-hosted": HOSTED},
    )
    chain = Runtime.for_settings(s).llm
    assert isinstance(chain, FallbackLLM)
    assert [b.name for b in chain.backends] == ["local-qwen", "large-hosted"]
    assert chain.backends[0].structured == "json"
