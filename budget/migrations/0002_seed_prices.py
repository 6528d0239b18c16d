"""Seed the price table of TEKTON_CONTRACT.md ("Budget"), in nano-USD per token.

The data is written out here (not imported) so this migration keeps its meaning when the
code changes. Idempotent: rows that exist are left alone.
"""

import datetime as dt

from django.db import migrations

SOURCE = "TEKTON_CONTRACT.md: the original Rhetor price table"
EFFECTIVE_FROM = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

# provider, model (family; "*" = any model), input, output (nano-USD per token)
PRICES = [
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
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("budget", "ModelPrice")
    for provider, model, input_price, output_price, note in PRICES:
        ModelPrice.objects.get_or_create(
            provider=provider,
            model=model,
            effective_from=EFFECTIVE_FROM,
            defaults={
                "input_price": input_price,
                "output_price": output_price,
                "unit": "nano_usd_per_token",
                "source": SOURCE + note,
                "created_at": EFFECTIVE_FROM,
            },
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("budget", "ModelPrice")
    ModelPrice.objects.filter(
        effective_from=EFFECTIVE_FROM,
        source__startswith=SOURCE,
        usage_records__isnull=True,
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("budget", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
