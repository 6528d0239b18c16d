"""Prices: quoting a request, costing a usage, and the operator's price changes."""

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from budget import policies
from budget.errors import NO_PRICE, PRICE_IN_USE
from budget.models import ModelPrice, UnpricedModel
from budget.prices import SEED_EFFECTIVE_FROM, SEED_PRICES, SEED_SOURCE
from budget.selectors import PriceQuote, budget_config, budget_config_touched, model_price_get
from budget.services.usage import TokenUsage
from rhetor_site.errors import InvalidInput

logger = logging.getLogger("budget")


def model_price_quote(*, provider: str, model: str, now: dt.datetime) -> PriceQuote:
    """The price a request of provider/model is charged at, from this worker's copy of the
    price table. An unpriced model is quoted at a fallback price and flagged for the admin
    (UnpricedModel); an empty table (a test flushed the database) gets the seed back."""
    quote = budget_config().quote(provider=provider, model=model, at=now)
    if quote is None:
        # Retry on fresh rows: this worker's copy may be what was empty.
        model_prices_seed()
        budget_config_touched()
        quote = budget_config().quote(provider=provider, model=model, at=now)
    if quote is None:
        raise InvalidInput(NO_PRICE.format(provider=provider, model=model), field="model")
    if quote.is_fallback:
        # Only this rare path writes outside the reserve's transaction.
        UnpricedModel.objects.bulk_create(
            [UnpricedModel(provider=provider, model=model)], ignore_conflicts=True
        )
        logger.warning(
            "No price for %s/%s: charged at %s/%s until an operator sets one",
            provider,
            model,
            quote.price.provider,
            quote.price.model,
        )
    return quote


def cost_for(*, provider: str, model: str, usage: TokenUsage) -> tuple[int, ModelPrice]:
    """What `usage` of provider/model costs now, in nanos, and the price it is charged at
    (an unpriced model at its provider's highest price)."""
    quote = model_price_get(provider=provider, model=model)
    if quote is None:
        raise InvalidInput(NO_PRICE.format(provider=provider, model=model), field="model")
    return (
        policies.cost_nanos(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            input_price=quote.price.input_price,
            output_price=quote.price.output_price,
        ),
        quote.price,
    )


@transaction.atomic
def model_price_set(
    *,
    provider: str,
    model: str,
    input_price: int,
    output_price: int,
    effective_from: dt.datetime | None = None,
    source: str = "",
) -> ModelPrice:
    """Add a price for provider/model from `effective_from` (default now); earlier prices
    stay as history. A price that usage was already charged at is never changed."""
    effective_from = effective_from or timezone.now()
    row = (
        ModelPrice.objects.select_for_update()
        .filter(provider=provider, model=model, effective_from=effective_from)
        .first()
    )
    if row is not None and row.usage_records.exists():
        raise InvalidInput(
            PRICE_IN_USE.format(provider=provider, model=model, effective_from=effective_from),
            field="effective_from",
        )
    if row is None:
        row = ModelPrice(provider=provider, model=model, effective_from=effective_from)
    row.input_price = input_price
    row.output_price = output_price
    row.source = source
    row.full_clean()
    row.save()
    budget_config_touched()
    return row


def model_prices_seed() -> int:
    """Restore the contract's seed prices if the price table is empty; returns how many
    rows were added (0 when any price exists)."""
    if ModelPrice.objects.exists():
        return 0
    rows = [
        ModelPrice(
            provider=provider,
            model=model,
            input_price=input_price,
            output_price=output_price,
            effective_from=SEED_EFFECTIVE_FROM,
            source=SEED_SOURCE + note,
            created_at=SEED_EFFECTIVE_FROM,
        )
        for provider, model, input_price, output_price, note in SEED_PRICES
    ]
    ModelPrice.objects.bulk_create(rows, ignore_conflicts=True)
    budget_config_touched()
    return len(rows)
