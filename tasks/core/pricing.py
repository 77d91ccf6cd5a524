"""Pricing: what a model call costs, from the catalog in configs/models.yaml. Pure."""

from __future__ import annotations

from tasks.rules import ModelPrice


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
