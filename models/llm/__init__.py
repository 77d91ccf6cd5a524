"""The large end of the ladder: one ``LLM`` protocol, three backends.

- ``OpenAICompatibleLLM``: any OpenAI-compatible chat server (vLLM serve, llama.cpp's server,
  a gateway to hosted models), with timeouts, retries on transient errors and a key from the
  environment; ``FallbackLLM`` chains several.
- ``batch``: OpenAI batch JSONL in and out, run by ``vllm run-batch`` or a provider's batch API.
- ``local``: the laptop default, a GGUF model shipped inside a PyPI package served by llama.cpp.
"""

from models.llm.protocol import (
    LLM,
    ChatMessage,
    ChatResult,
    LLMBadResponse,
    LLMError,
    LLMUnavailable,
)

__all__ = [
    "LLM",
    "ChatMessage",
    "ChatResult",
    "LLMBadResponse",
    "LLMError",
    "LLMUnavailable",
]
