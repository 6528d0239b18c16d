"""Prices and limits, cached per worker.

Every metered request needs the price of its model and the limits that apply to it. Both
change rarely (an operator's edit), so each worker keeps all ModelPrice and BudgetLimit
rows in memory, exactly like the route table (llm.route_table): at most every
RHETOR_BUDGET_RECHECK_SECONDS (default: RHETOR_ROUTES_RECHECK_SECONDS, else 1 s) it
compares the version it loaded with the shared version in the cache (Redis with
REDIS_URL), and reloads when it changed. Every write of prices or limits bumps the version
once committed (`budget_config_touched`, called by the budget services and by the model
signals in `budget.apps` for admin and other ORM edits) and drops the writing worker's copy
at once. Only the configuration is cached: the spend counters, and so the enforce check
itself, stay in the database.
"""

import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import transaction

from budget import policies
from budget.models import ANY_MODEL, BudgetLimit, ModelPrice
from budget.selectors.limits import (
    EffectiveLimit,
    budget_limits_fingerprint,
    limit_from_row,
    with_env_defaults,
)
from budget.selectors.prices import PriceQuote, pick_quote
from rhetor_site.versioned import VersionedCache

BUDGET_CONFIG_VERSION_KEY = "rhetor:budget_config:version"
_MEMO_MAX = 4096  # (provider, model) quotes / (provider, component) limit lists per worker
_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)
_ALWAYS = dt.datetime.min.replace(tzinfo=dt.UTC)


def _env_key() -> tuple[str, str, str, str]:
    return (
        str(getattr(settings, "RHETOR_BUDGET_POLICY", "warn")),
        str(getattr(settings, "RHETOR_BUDGET_DAILY_LIMIT", "")),
        str(getattr(settings, "RHETOR_BUDGET_WEEKLY_LIMIT", "")),
        str(getattr(settings, "RHETOR_BUDGET_MONTHLY_LIMIT", "")),
    )


class BudgetConfig:
    """One load of the price and limit tables, with per-worker answers memoized (both
    tables are small: one row per priced model and per limit)."""

    def __init__(
        self,
        *,
        prices: Iterable[ModelPrice],
        limits: Iterable[BudgetLimit],
        limits_fingerprint: tuple[Any, ...] | None = None,
    ) -> None:
        self.prices = tuple(prices)
        self.limit_rows = tuple(limit_from_row(row) for row in limits)
        # budget_limits_fingerprint() as it was before the limits were read.
        self.limits_fingerprint = limits_fingerprint
        self._by_provider: dict[str, list[ModelPrice]] = {}
        for price in self.prices:
            self._by_provider.setdefault(price.provider, []).append(price)
        self._starts = sorted({price.effective_from for price in self.prices})
        # (provider, model) -> (quote, valid from, valid until): a quote holds while no
        # price starts in between.
        self._quotes: dict[tuple[str, str], tuple[PriceQuote | None, dt.datetime, dt.datetime]]
        self._quotes = {}
        self._limits: dict[tuple[str, str, tuple[str, str, str, str]], list[EffectiveLimit]]
        self._limits = {}

    def quote(self, *, provider: str, model: str, at: dt.datetime) -> PriceQuote | None:
        """What `model_price_get` answers, from memory."""
        memo = self._quotes.get((provider, model))
        if memo is not None and memo[1] <= at < memo[2]:
            return memo[0]
        family = policies.model_family(model)
        names = {model, family, ANY_MODEL}
        mine = self._by_provider.get(provider, [])
        quote = pick_quote(
            provider=provider,
            model=model,
            family=family,
            own=[p for p in mine if p.model in names and p.effective_from <= at],
            provider_rows=lambda: [p for p in mine if p.effective_from <= at],
            any_rows=lambda: [p for p in self.prices if p.effective_from <= at],
        )
        before = [start for start in self._starts if start <= at]
        after = [start for start in self._starts if start > at]
        if len(self._quotes) >= _MEMO_MAX:
            self._quotes.clear()
        self._quotes[(provider, model)] = (
            quote,
            before[-1] if before else _ALWAYS,
            after[0] if after else _NEVER,
        )
        return quote

    def limits_for(self, *, provider: str, component: str) -> list[EffectiveLimit]:
        """What `effective_limits_for` answers, from memory (do not modify the list)."""
        key = (provider, component, _env_key())
        limits = self._limits.get(key)
        if limits is None:
            limits = with_env_defaults(
                lim
                for lim in self.limit_rows
                if lim.scope_kind == "all"
                or (lim.scope_kind == "provider" and lim.scope_value == provider)
                or (component and lim.scope_kind == "component" and lim.scope_value == component)
            )
            if len(self._limits) >= _MEMO_MAX:
                self._limits.clear()
            self._limits[key] = limits
        return limits


def budget_config_load() -> BudgetConfig:
    """The price and limit tables from the database (three queries)."""
    fingerprint = budget_limits_fingerprint()  # first: rows read after it are no older
    return BudgetConfig(
        prices=ModelPrice.objects.all(),
        limits=BudgetLimit.objects.all(),
        limits_fingerprint=fingerprint,
    )


class BudgetConfigCache(VersionedCache[BudgetConfig]):
    """One worker's copy of the budget configuration (see above)."""

    def __init__(
        self,
        *,
        loader: Callable[[], BudgetConfig] = budget_config_load,
        recheck_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            key=BUDGET_CONFIG_VERSION_KEY,
            loader=loader,
            recheck_setting="RHETOR_BUDGET_RECHECK_SECONDS",
            recheck_seconds=recheck_seconds,
            clock=clock,
        )


# Tests replace it here (`budget.selectors.config.worker_budget_config`): the functions
# below look it up in this module.
worker_budget_config = BudgetConfigCache()


def budget_config() -> BudgetConfig:
    """This worker's prices and limits: no query in steady state."""
    return worker_budget_config.get()


def budget_config_checked() -> BudgetConfig:
    """This worker's prices and limits, its limits first checked against the database's
    (one small aggregate; see `budget_limits_fingerprint`)."""
    config = budget_config()
    if config.limits_fingerprint != budget_limits_fingerprint():
        budget_config_drop()
        config = budget_config()
    return config


def budget_config_drop() -> None:
    """Drop this worker's copy (it reloads on its next use)."""
    worker_budget_config.invalidate()


def budget_config_changed() -> None:
    """Tell every worker to reload prices and limits: a new shared version, and this
    worker's copy dropped at once. Call it once the change is committed
    (`transaction.on_commit`); `budget_config_touched` does both."""
    worker_budget_config.changed()


def budget_config_touched() -> None:
    """Prices or limits changed in the current transaction: drop this worker's copy of the
    budget configuration now (its own transaction sees the change) and, once committed,
    make every worker reload."""
    budget_config_drop()
    transaction.on_commit(budget_config_changed)
