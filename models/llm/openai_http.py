"""An OpenAI-compatible chat backend over HTTP: vLLM serve, llama.cpp's server, gateways.

Transient failures (connection refused, timeouts, HTTP 408/429/5xx) are retried with
exponential backoff; anything else fails at once. The API key is passed in by the caller, who
reads it from the environment: it is never logged nor part of ``repr``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from models.llm.protocol import (
    ChatMessage,
    ChatResult,
    LLMBadResponse,
    LLMError,
    LLMUnavailable,
    parse_completion,
)

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def request_body(
    model: str,
    messages: Sequence[ChatMessage],
    *,
    schema: Mapping[str, Any] | None,
    max_tokens: int,
    structured: str = "schema",
) -> dict[str, Any]:
    """The chat-completions body; with a schema, JSON output constrained to it.

    With ``structured="schema"`` the schema goes as ``{"type": "json_object", "schema": ...}``,
    the form llama.cpp's server and vLLM both turn into grammar-constrained decoding. With
    ``"json"`` only JSON syntax is constrained (the prompt names the fields, the caller
    validates): llama-cpp-python samples a full schema grammar at ~0.5 s per token on two CPU
    cores, against ~0.05 s for plain JSON. Temperature 0 and a fixed seed keep answers
    reproducible.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in messages],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
    }
    if schema is not None and structured == "schema":
        body["response_format"] = {"type": "json_object", "schema": dict(schema)}
    elif schema is not None:
        body["response_format"] = {"type": "json_object"}
    return body


class OpenAICompatibleLLM:
    """Chat completions at ``base_url`` (ending in ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        name: str | None = None,
        structured: str = "schema",
        timeout_s: float = 120.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._name = name or model
        if structured not in {"schema", "json"}:
            raise ValueError(f"structured must be 'schema' or 'json', not {structured!r}")
        self.structured = structured
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers)

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM({self.base_url!r}, {self.model!r})"

    @property
    def name(self) -> str:
        """The catalog key this backend serves (prices come from it)."""
        return self._name

    def close(self) -> None:
        self._client.close()

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatResult:
        body = request_body(
            self.model, messages, schema=schema, max_tokens=max_tokens, structured=self.structured
        )
        payload = self._post("/chat/completions", body)
        result = parse_completion(payload, fallback_model=self.model)
        return dataclasses.replace(result, served_by=self.name)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = f"{self.base_url}{path}"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(url, json=body)
            except httpx.TimeoutException as exc:
                last = f"timed out ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                last = f"cannot be reached ({type(exc).__name__})"
                continue
            if response.status_code in TRANSIENT_STATUS:
                last = f"answered HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise LLMBadResponse(
                    f"{url} refused the request: HTTP {response.status_code} "
                    f"{response.text[:200]!r}"
                )
            try:
                return response.json()
            except ValueError as exc:
                raise LLMBadResponse(f"{url} answered with a body that is not JSON") from exc
        raise LLMUnavailable(
            f"{url} {last} after {self.max_retries + 1} attempts: start the model server "
            "or point the endpoint elsewhere"
        )


class FallbackLLM:
    """Try backends in order; move on only when one is unavailable (not on a bad answer)."""

    def __init__(self, backends: Sequence[Any]):
        if not backends:
            raise ValueError("a fallback chain needs at least one backend")
        self.backends = list(backends)

    @property
    def name(self) -> str:
        return str(self.backends[0].name)

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatResult:
        failures: list[str] = []
        for backend in self.backends:
            try:
                result: ChatResult = backend.chat(messages, schema=schema, max_tokens=max_tokens)
                return result
            except LLMUnavailable as exc:
                failures.append(f"{backend.name}: {exc}")
        raise LLMUnavailable("every backend in the chain failed: " + "; ".join(failures))


__all__ = ["FallbackLLM", "LLMError", "OpenAICompatibleLLM", "request_body"]
