"""Prices and tiers: the price a model is quoted at, and which models are cheaper."""

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.utils import timezone

from budget import policies
from budget.models import ANY_MODEL, ModelPrice


@dataclass(frozen=True)
class PriceQuote:
    """The price a request is charged at. `is_fallback` when the model has no price of its
    own and is charged at its provider's (or, failing that, any provider's) highest."""

    price: ModelPrice
    is_fallback: bool


def _latest_per_model(rows: Iterable[ModelPrice]) -> dict[tuple[str, str], ModelPrice]:
    current: dict[tuple[str, str], ModelPrice] = {}
    for row in rows:
        key = (row.provider, row.model)
        if key not in current or row.effective_from > current[key].effective_from:
            current[key] = row
    return current


def model_price_list_current(*, at: dt.datetime | None = None) -> list[ModelPrice]:
    """The price in force for every priced (provider, model), ordered by provider, model."""
    at = at or timezone.now()
    rows = ModelPrice.objects.filter(effective_from__lte=at)
    current = _latest_per_model(rows)
    return [current[key] for key in sorted(current)]


def _most_expensive(rows: Iterable[ModelPrice]) -> ModelPrice | None:
    ranked = sorted(
        _latest_per_model(rows).values(),
        key=lambda p: (p.input_price + p.output_price, p.output_price, p.pk),
    )
    return ranked[-1] if ranked else None


def pick_quote(
    *,
    provider: str,
    model: str,
    family: str,
    own: Iterable[ModelPrice],
    provider_rows: Callable[[], Iterable[ModelPrice]],
    any_rows: Callable[[], Iterable[ModelPrice]],
) -> PriceQuote | None:
    """`model_price_get`'s choice among rows in force, from the database or from a worker's
    copy (`BudgetConfig.quote`): `own` are the rows of the model, its family and the
    provider's "*"; the others are asked for only when none of those apply."""
    current = _latest_per_model(own)
    for key in ((provider, model), (provider, family), (provider, ANY_MODEL)):
        if key in current:
            return PriceQuote(price=current[key], is_fallback=False)
    fallback = _most_expensive(provider_rows())
    if fallback is None:
        fallback = _most_expensive(any_rows())
    if fallback is None:
        return None
    return PriceQuote(price=fallback, is_fallback=True)


def model_price_get(
    *, provider: str, model: str, at: dt.datetime | None = None
) -> PriceQuote | None:
    """The price in force for a model: its own row, else its family's (date suffix
    dropped), else the provider's "*" row. A model with none of these is never free: it is
    quoted at the provider's highest current price (`is_fallback`), or the highest of any
    provider. None only when no price exists at all.

    From the database; the request path quotes from the worker's `budget_config()`."""
    at = at or timezone.now()
    family = policies.model_family(model)
    return pick_quote(
        provider=provider,
        model=model,
        family=family,
        own=ModelPrice.objects.filter(
            provider=provider, model__in={model, family, ANY_MODEL}, effective_from__lte=at
        ),
        provider_rows=lambda: ModelPrice.objects.filter(provider=provider, effective_from__lte=at),
        any_rows=lambda: ModelPrice.objects.filter(effective_from__lte=at),
    )


# --- Tiers and alternatives ------------------------------------------------------------------


@dataclass(frozen=True)
class TierEntry:
    provider: str
    model: str
    tier: str
    input_price: int
    output_price: int

    @property
    def per_1k_nanos(self) -> int:
        return policies.per_1k_tokens(input_price=self.input_price, output_price=self.output_price)


def _tier_entry(price: ModelPrice) -> TierEntry:
    return TierEntry(
        provider=price.provider,
        model=price.model,
        tier=policies.tier_for(input_price=price.input_price, output_price=price.output_price),
        input_price=price.input_price,
        output_price=price.output_price,
    )


def model_tiers(*, at: dt.datetime | None = None) -> dict[str, list[TierEntry]]:
    """Every priced model by tier (free, low, medium, high), cheapest first in each."""
    tiers: dict[str, list[TierEntry]] = {tier: [] for tier in policies.TIERS}
    for price in model_price_list_current(at=at):
        entry = _tier_entry(price)
        tiers[entry.tier].append(entry)
    for entries in tiers.values():
        entries.sort(key=lambda e: (e.per_1k_nanos, e.provider, e.model))
    return tiers


def cheaper_alternatives(
    *,
    provider: str,
    model: str,
    candidates: Iterable[tuple[str, str]] | None = None,
    provider_order: Sequence[str] | None = None,
    at: dt.datetime | None = None,
) -> list[tuple[str, str]]:
    """Models strictly cheaper (input+output per token) than `provider/model`, for
    budget-aware steering: tier by tier downwards, cheapest last (free models at the end).
    Within a tier, providers follow `provider_order` (default: `provider` first).

    `candidates` are the (provider, model) pairs the caller can actually serve; they are
    priced like requests are (an unpriced candidate counts at its fallback price). Without
    them, the price table's models are used, and a provider priced by a "*" row appears as
    (provider, "*"), meaning any of its models (e.g. the local Ollama default).
    """
    quote = model_price_get(provider=provider, model=model, at=at)
    if quote is None:
        return []
    base = quote.price.input_price + quote.price.output_price
    order = list(provider_order or [provider])
    if provider not in order:
        order.insert(0, provider)

    priced: list[tuple[TierEntry, str]] = []
    if candidates is None:
        for price in model_price_list_current(at=at):
            priced.append((_tier_entry(price), price.model))
    else:
        for cand_provider, cand_model in dict.fromkeys(candidates):
            cand = model_price_get(provider=cand_provider, model=cand_model, at=at)
            if cand is None:
                continue
            entry = _tier_entry(cand.price)
            priced.append(
                (
                    TierEntry(
                        provider=cand_provider,
                        model=cand_model,
                        tier=entry.tier,
                        input_price=entry.input_price,
                        output_price=entry.output_price,
                    ),
                    cand_model,
                )
            )

    def rank(item: tuple[TierEntry, str]) -> tuple[int, int, int, str]:
        entry = item[0]
        pos = order.index(entry.provider) if entry.provider in order else len(order)
        return (-policies.TIERS.index(entry.tier), pos, -entry.per_1k_nanos, entry.model)

    cheaper = [
        item
        for item in priced
        if item[0].input_price + item[0].output_price < base
        and (item[0].provider, item[1]) != (provider, model)
    ]
    cheaper.sort(key=rank)
    return [(entry.provider, name) for entry, name in cheaper]
