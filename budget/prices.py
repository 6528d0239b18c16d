"""The seed price table of TEKTON_CONTRACT.md ("Budget"), in nano-USD per token.

Migration 0002 carries a frozen copy of it; `budget.services.prices.model_prices_seed` restores it
(idempotently) when the price table is empty, e.g. after a test flushed the database.
"""

import datetime as dt

SEED_SOURCE = "TEKTON_CONTRACT.md: the original Rhetor price table"
SEED_EFFECTIVE_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# provider, model (family; "*" = any model of the provider), input, output, source note
SEED_PRICES: tuple[tuple[str, str, int, int, str], ...] = (
    ("anthropic", "claude-3-opus", 15_000, 75_000, ""),
    ("anthropic", "claude-3-sonnet", 3_000, 15_000, ""),
    ("anthropic", "claude-3-haiku", 250, 1_250, ""),
    (
        "anthropic",
        "claude-3-5-sonnet",
        3_000,
        13_000,
        " (the vendor's list price is 15000 nano-USD per output token)",
    ),
    ("openai", "gpt-4", 30_000, 60_000, ""),
    ("openai", "gpt-4-turbo", 10_000, 30_000, ""),
    (
        "openai",
        "gpt-4o",
        10_000,
        30_000,
        " (the vendor's later list price is 2500 / 10000 nano-USD per token)",
    ),
    ("openai", "gpt-3.5-turbo", 500, 1_500, ""),
    ("ollama", "*", 0, 0, " (local models are free)"),
    ("simulated", "*", 0, 0, " (simulated models are free)"),
)
