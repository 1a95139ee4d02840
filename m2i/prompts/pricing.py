"""Estimated cost of one completion, from list prices per million tokens.

Prices are Anthropic's published list prices (USD per million input / output tokens) for the
model families m2i knows; a model matched by none gives ``None`` (unknown), never a guess. Prompt
cache writes cost 1.25x the input price, cache reads 0.1x, and the Message Batches API halves
everything. Override with ``price_in`` / ``price_out`` provider options (USD per million tokens)
when your contract differs. Local models (``local``, ``ollama``) cost 0; OpenAI-compatible
servers are ``None`` unless prices are given.
"""

from __future__ import annotations

# Longest matching prefix wins.
ANTHROPIC_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-0": (15.0, 75.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-2": (15.0, 75.0),
    "claude-opus-4": (5.0, 25.0),  # Opus 4.5 and later 4.x
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}


def anthropic_price(model: str) -> tuple[float, float] | None:
    """``(input, output)`` USD per million tokens for a Claude model id, or ``None``."""
    best: tuple[str, tuple[float, float]] | None = None
    for prefix, price in ANTHROPIC_PRICES.items():
        if model.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, price)
    return best[1] if best else None


def estimate_cost(
    *,
    price: tuple[float, float] | None,
    tokens_in: int | None,
    tokens_out: int | None,
    cache_read: int = 0,
    cache_write: int = 0,
    batch: bool = False,
) -> float | None:
    """USD for one completion.

    Parameters
    ----------
    price : (float, float) or None
        USD per million input and output tokens; ``None`` gives ``None``.
    tokens_in : int or None
        Uncached input tokens.
    tokens_out : int or None
        Output tokens.
    cache_read, cache_write : int
        Input tokens read from / written to the prompt cache.
    batch : bool
        Message Batches (half price).
    """
    if price is None or tokens_in is None or tokens_out is None:
        return None
    p_in, p_out = price
    usd = (tokens_in * p_in + cache_write * p_in * 1.25 + cache_read * p_in * 0.1 + tokens_out * p_out) / 1e6
    return round(usd * (0.5 if batch else 1.0), 8)
