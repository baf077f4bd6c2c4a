"""Prices of known OpenAI models (USD per million tokens), overridable with VISEXTRACT_LLM_PRICES.

VISEXTRACT_LLM_PRICES='{"my-model": [0.2, 0.8]}'   # input, output per 1M tokens
"""

from __future__ import annotations

# Public list prices (input, output) per 1M tokens, as of 2025. Dated snapshots match by prefix.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
}


def price_of(model: str, overrides: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for `model`, by exact name then longest known prefix."""
    table = {**KNOWN_PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name + "-")]
    return table[max(prefixes, key=len)] if prefixes else None


def cost_usd(
    model: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    overrides: dict[str, tuple[float, float]] | None = None,
) -> float | None:
    """The cost of a call, or None when the model's price or the token counts are unknown."""
    price = price_of(model, overrides)
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000, 8)
