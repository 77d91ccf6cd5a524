"""What the pipeline needs of a large model: chat with a JSON schema, usage in tokens.

Errors, kept apart from ``tasks.errors`` because models/ knows nothing of tasks/:

    LLMError
    ├── LLMUnavailable   the backend cannot be reached, timed out or keeps failing (transient)
    └── LLMBadResponse   the backend answered, but not with a usable chat completion
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict


class ChatMessage(TypedDict):
    role: str
    content: str


@dataclass(frozen=True)
class ChatResult:
    """One completion: the text as returned (not yet validated) and the tokens it used."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    finish_reason: str | None = None
    refusal: str | None = None
    served_by: str = ""


class LLMError(Exception):
    """A large-model call failed."""


class LLMUnavailable(LLMError):
    """The backend is down, timed out or answered with transient errors after every retry."""


class LLMBadResponse(LLMError):
    """The backend answered with something that is not a usable chat completion."""


class LLM(Protocol):
    """A chat model that can be asked for JSON matching a schema."""

    @property
    def name(self) -> str: ...

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatResult: ...


def parse_completion(payload: Any, *, fallback_model: str) -> ChatResult:
    """A ``ChatResult`` from an OpenAI chat-completions response body.

    Raises:
        LLMBadResponse: the body has no choice, no message or no token usage (a call whose
            usage is unknown cannot be priced, so it is never accepted as free).
    """
    if not isinstance(payload, dict):
        raise LLMBadResponse(f"response is not a JSON object: {str(payload)[:80]!r}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMBadResponse("response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise LLMBadResponse("response choice has no message")
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        raise LLMBadResponse("response has no usage: the call cannot be priced")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if (
        not isinstance(prompt, int)
        or not isinstance(completion, int)
        or min(prompt, completion) < 0
    ):
        raise LLMBadResponse(f"response usage is not two token counts: {usage}")
    content = message.get("content")
    refusal = message.get("refusal")
    return ChatResult(
        text=content if isinstance(content, str) else "",
        input_tokens=prompt,
        output_tokens=completion,
        model=str(payload.get("model") or fallback_model),
        finish_reason=choices[0].get("finish_reason"),
        refusal=refusal if isinstance(refusal, str) and refusal else None,
    )
