"""Pricing: what a model call costs, from the catalog in configs/models.yaml. Pure."""

from __future__ import annotations

from tasks.rules import ModelPrice

# The ledger's model for an answer served from a cache (semantic, warm or summary tier): a real
# call event that costs $0. It is not in the price catalog, so no task can ever be served by it.
CACHE_MODEL = "cache"


def call_cost(
    price: ModelPrice, *, input_tokens: int, output_tokens: int = 0, gpu_seconds: float = 0.0
) -> float:
    """USD for one call. Negative usage is a bug upstream and is refused."""
    if min(input_tokens, output_tokens) < 0 or gpu_seconds < 0:
        raise ValueError("usage cannot be negative")
    return (
        input_tokens / 1000 * price.usd_per_1k_input_tokens
        + output_tokens / 1000 * price.usd_per_1k_output_tokens
        + gpu_seconds * price.usd_per_gpu_second
    )
