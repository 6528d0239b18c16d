"""Budget reads: prices, tiers, limits in force, status and the usage ledger."""

import datetime as dt
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from budget import policies
from budget.models import (
    ANY_MODEL,
    BudgetLimit,
    ModelPrice,
    Policy,
    SpendCounter,
    UsageRecord,
)
from rhetor_site.versioned import VersionedCache

# --- Prices ------------------------------------------------------------------------------


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


def _pick_quote(
    *,
    provider: str,
    model: str,
    family: str,
    own: Iterable[ModelPrice],
    provider_rows: Callable[[], Iterable[ModelPrice]],
    any_rows: Callable[[], Iterable[ModelPrice]],
) -> PriceQuote | None:
    """`model_price_get`'s choice among rows in force: `own` are the rows of the model, its
    family and the provider's "*"; the others are asked for only when none of those apply."""
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
    return _pick_quote(
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


# --- Limits in force -----------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveLimit:
    """A limit as enforced: a BudgetLimit row, or the env default (`id` None) for scope
    "all" of a period that has no row."""

    id: int | None
    period: str
    scope_kind: str
    scope_value: str
    limit_nanos: int | None
    policy: str
    start_date: dt.date | None = None

    @property
    def scope(self) -> str:
        return "all" if self.scope_kind == "all" else f"{self.scope_kind}:{self.scope_value}"


def env_default_limits() -> dict[str, int | None]:
    """RHETOR_BUDGET_{DAILY,WEEKLY,MONTHLY}_LIMIT as nanos (None when empty)."""
    result: dict[str, int | None] = {}
    for period in policies.PERIODS:
        raw = str(getattr(settings, f"RHETOR_BUDGET_{period.upper()}_LIMIT", "") or "").strip()
        result[period] = policies.nanos_from_usd(raw) if raw else None
    return result


def env_default_policy() -> str:
    policy = str(getattr(settings, "RHETOR_BUDGET_POLICY", "warn") or "warn").strip().lower()
    return policy if policy in policies.POLICIES else Policy.WARN


def _from_row(row: BudgetLimit) -> EffectiveLimit:
    return EffectiveLimit(
        id=row.pk,
        period=row.period,
        scope_kind=row.scope_kind,
        scope_value=row.scope_value,
        limit_nanos=row.limit_nanos,
        policy=row.enforcement,
        start_date=row.start_date,
    )


def _with_env_defaults(rows: Iterable[BudgetLimit | EffectiveLimit]) -> list[EffectiveLimit]:
    limits = [row if isinstance(row, EffectiveLimit) else _from_row(row) for row in rows]
    have_all = {lim.period for lim in limits if lim.scope_kind == "all"}
    defaults = env_default_limits()
    policy = env_default_policy()
    for period in policies.PERIODS:
        if period not in have_all:
            limits.append(
                EffectiveLimit(
                    id=None,
                    period=period,
                    scope_kind="all",
                    scope_value="",
                    limit_nanos=defaults[period],
                    policy=policy,
                )
            )
    limits.sort(key=lambda lim: (lim.period, lim.scope_kind, lim.scope_value))
    return limits


def effective_limits_for(*, provider: str, component: str) -> list[EffectiveLimit]:
    """Every limit that applies to a request of `provider` for `component` (one query)."""
    scope = Q(scope_kind="all") | Q(scope_kind="provider", scope_value=provider)
    if component:
        scope |= Q(scope_kind="component", scope_value=component)
    return _with_env_defaults(BudgetLimit.objects.filter(scope))


def effective_limit_list() -> list[EffectiveLimit]:
    """Every limit and policy in force, env defaults included."""
    return _with_env_defaults(BudgetLimit.objects.all())


# --- Prices and limits, cached per worker ------------------------------------------------------
#
# Every metered request needs the price of its model and the limits that apply to it. Both
# change rarely (an operator's edit), so each worker keeps all ModelPrice and BudgetLimit
# rows in memory, exactly like the route table (llm.route_table): at most every
# RHETOR_BUDGET_RECHECK_SECONDS (default: RHETOR_ROUTES_RECHECK_SECONDS, else 1 s) it
# compares the version it loaded with the shared version in the cache (Redis with
# REDIS_URL), and reloads when it changed. Every write of prices or limits bumps the version
# once committed (`budget.services`, and the model signals in `budget.apps` for admin and
# other ORM edits) and drops the writing worker's copy at once. Only the configuration is
# cached: the spend counters, and so the enforce check itself, stay in the database.

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
        self.limit_rows = tuple(_from_row(row) for row in limits)
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
        quote = _pick_quote(
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
            limits = _with_env_defaults(
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


def budget_limits_fingerprint() -> tuple[Any, ...]:
    """How many limit rows exist and when one last changed (`updated_at` moves on every
    save; a delete changes the count): one aggregate over a table of a few rows. Reserve
    compares it with its cached limits on every request, so a limit an operator sets or
    lowers on any worker is enforced by every worker from the next request on, without
    waiting for the version recheck. (Prices follow the recheck.)"""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(_limits_fingerprint_sql(db.vendor))
        return tuple(cursor.fetchone())


@functools.cache
def _limits_fingerprint_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    # A quoted identifier of our own model.
    return f"SELECT COUNT(*), MAX({q('updated_at')}) FROM {q(BudgetLimit._meta.db_table)}"  # noqa: S608


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


worker_budget_config = BudgetConfigCache()


def budget_config() -> BudgetConfig:
    """This worker's prices and limits: no query in steady state."""
    return worker_budget_config.get()


def budget_config_drop() -> None:
    """Drop this worker's copy (it reloads on its next use)."""
    worker_budget_config.invalidate()


def budget_config_changed() -> None:
    """Tell every worker to reload prices and limits: a new shared version, and this
    worker's copy dropped at once. Call it once the change is committed
    (`transaction.on_commit`); `budget.services.budget_config_touched` does both."""
    worker_budget_config.changed()


# --- Windows, counters, status ----------------------------------------------------------------


def current_window(*, period: str, at: dt.datetime | None = None) -> dt.date:
    return policies.window_start(
        period=period, now=at or timezone.now(), tz=settings.RHETOR_TIMEZONE
    )


def spend_counter_get(
    *, period: str, scope_kind: str = "all", scope_value: str = "", at: dt.datetime | None = None
) -> SpendCounter | None:
    return SpendCounter.objects.filter(
        period=period,
        scope_kind=scope_kind,
        scope_value=scope_value,
        window_start=current_window(period=period, at=at),
    ).first()


@dataclass(frozen=True)
class PeriodStatus:
    period: str
    window_start: dt.date
    usage_nanos: int  # settled spend in the window (since the last operator reset)
    reserved_nanos: int  # held by requests in flight
    limit_nanos: int | None
    policy: str

    @property
    def remaining_nanos(self) -> int | None:
        if self.limit_nanos is None:
            return None
        return max(0, self.limit_nanos - self.usage_nanos - self.reserved_nanos)

    @property
    def percentage(self) -> float | None:
        if self.limit_nanos is None:
            return None
        if self.limit_nanos == 0:
            return 100.0 if self.usage_nanos else 0.0
        return round(self.usage_nanos * 100 / self.limit_nanos, 2)

    def as_payload(self) -> dict[str, Any]:
        """One period of GET /budget (money as USD strings)."""
        remaining = self.remaining_nanos
        return {
            "usage": policies.usd(self.usage_nanos),
            "limit": None if self.limit_nanos is None else policies.usd(self.limit_nanos),
            "remaining": None if remaining is None else policies.usd(remaining),
            "policy": self.policy,
            "percentage": self.percentage,
            "reserved": policies.usd(self.reserved_nanos),
            "window_start": self.window_start.isoformat(),
        }


@dataclass(frozen=True)
class BudgetStatus:
    daily: PeriodStatus
    weekly: PeriodStatus
    monthly: PeriodStatus

    @property
    def budget_enabled(self) -> bool:
        return any(
            p.limit_nanos is not None and p.policy != Policy.IGNORE
            for p in (self.daily, self.weekly, self.monthly)
        )

    def as_status_payload(self) -> dict[str, Any]:
        """The `budget` object of the WebSocket STATUS reply (money as USD strings)."""
        payload: dict[str, Any] = {}
        for p in (self.daily, self.weekly, self.monthly):
            payload[f"{p.period}_usage"] = policies.usd(p.usage_nanos)
            payload[f"{p.period}_limit"] = (
                None if p.limit_nanos is None else policies.usd(p.limit_nanos)
            )
        payload["budget_enabled"] = self.budget_enabled
        return payload


def budget_status(
    *, scope_kind: str = "all", scope_value: str = "", at: dt.datetime | None = None
) -> BudgetStatus:
    """Usage, holds, limit and policy of the current window of each period for one scope
    (default: all providers). Two queries."""
    at = at or timezone.now()
    windows = {p: current_window(period=p, at=at) for p in policies.PERIODS}
    window_q = Q()
    for period, start in windows.items():
        window_q |= Q(period=period, window_start=start)
    counters = {
        c.period: c
        for c in SpendCounter.objects.filter(
            window_q, scope_kind=scope_kind, scope_value=scope_value
        )
    }
    if scope_kind == "all":
        limits = [lim for lim in effective_limit_list() if lim.scope_kind == "all"]
    else:
        limits = [
            _from_row(row)
            for row in BudgetLimit.objects.filter(scope_kind=scope_kind, scope_value=scope_value)
        ]
    by_period = {lim.period: lim for lim in limits}
    statuses = {}
    for period in policies.PERIODS:
        counter = counters.get(period)
        lim = by_period.get(period)
        statuses[period] = PeriodStatus(
            period=period,
            window_start=windows[period],
            usage_nanos=counter.used_nanos if counter else 0,
            reserved_nanos=counter.reserved_nanos if counter else 0,
            limit_nanos=lim.limit_nanos if lim else None,
            policy=lim.policy if lim else env_default_policy(),
        )
    return BudgetStatus(
        daily=statuses["daily"], weekly=statuses["weekly"], monthly=statuses["monthly"]
    )


# --- The ledger ---------------------------------------------------------------------------------


def window_range(*, period: str, at: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    start = current_window(period=period, at=at)
    return policies.window_bounds(period=period, start=start, tz=settings.RHETOR_TIMEZONE)


def usage_record_list(
    *,
    period: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    component: str | None = None,
    status: str | None = None,
    at: dt.datetime | None = None,
) -> QuerySet[UsageRecord]:
    """Usage records, newest first, of the current window of `period` (all time without)."""
    qs = UsageRecord.objects.all()
    if period:
        start, end = window_range(period=period, at=at)
        qs = qs.filter(created_at__gte=start, created_at__lt=end)
    if provider and provider != "all":
        qs = qs.filter(provider=provider)
    if model:
        qs = qs.filter(model=model)
    if component:
        qs = qs.filter(component=component)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


@dataclass(frozen=True)
class UsageTotals:
    cost_nanos: int
    input_tokens: int
    output_tokens: int
    count: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageSummary:
    period: str
    group_by: str
    totals: UsageTotals
    groups: dict[str, UsageTotals]


GROUP_BY_FIELDS = ("provider", "model", "component", "task_type", "status")


def usage_totals(qs: QuerySet[UsageRecord]) -> UsageTotals:
    agg = qs.aggregate(
        cost=Sum("cost_nanos"), inp=Sum("input_tokens"), out=Sum("output_tokens"), n=Count("id")
    )
    return UsageTotals(
        cost_nanos=agg["cost"] or 0,
        input_tokens=agg["inp"] or 0,
        output_tokens=agg["out"] or 0,
        count=agg["n"],
    )


def usage_summary(
    *, period: str, group_by: str = "provider", at: dt.datetime | None = None
) -> UsageSummary:
    """Totals of the current window of `period`, and the same per value of `group_by`."""
    if group_by not in GROUP_BY_FIELDS:
        raise ValueError(f"cannot group by {group_by!r}")
    qs = usage_record_list(period=period, at=at).order_by()
    groups: dict[str, UsageTotals] = {}
    rows = qs.values(group_by).annotate(
        cost=Sum("cost_nanos"), inp=Sum("input_tokens"), out=Sum("output_tokens"), n=Count("id")
    )
    for row in rows.order_by(group_by):
        groups[row[group_by] or ""] = UsageTotals(
            cost_nanos=row["cost"] or 0,
            input_tokens=row["inp"] or 0,
            output_tokens=row["out"] or 0,
            count=row["n"],
        )
    totals = UsageTotals(
        cost_nanos=sum(g.cost_nanos for g in groups.values()),
        input_tokens=sum(g.input_tokens for g in groups.values()),
        output_tokens=sum(g.output_tokens for g in groups.values()),
        count=sum(g.count for g in groups.values()),
    )
    return UsageSummary(period=period, group_by=group_by, totals=totals, groups=groups)


def daily_spend_by(
    *, field: str, days: int = 30, at: dt.datetime | None = None
) -> tuple[list[dt.date], dict[str, list[int]]]:
    """Spend per local day for the last `days` days, one series per value of `field`
    (for the admin's spend chart)."""
    tz = settings.RHETOR_TIMEZONE
    at = at or timezone.now()
    today = policies.window_start(period="daily", now=at, tz=tz)
    first = today - dt.timedelta(days=days - 1)
    start, _ = policies.window_bounds(period="daily", start=first, tz=tz)
    _, end = policies.window_bounds(period="daily", start=today, tz=tz)
    rows = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=ZoneInfo(tz)))
        .values("day", field)
        .annotate(cost=Sum("cost_nanos"))
        .order_by()
    )
    days_list = [first + dt.timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(days_list)}
    series: dict[str, list[int]] = {}
    for row in rows:
        key = row[field] or "(none)"
        values = series.setdefault(key, [0] * days)
        if row["day"] in index:
            values[index[row["day"]]] += row["cost"] or 0
    return days_list, series


# --- The operator dashboard ----------------------------------------------------------------------


def day_range(*, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of one local day (RHETOR_TIMEZONE) as aware datetimes."""
    return policies.window_bounds(period="daily", start=day, tz=settings.RHETOR_TIMEZONE)


def local_today(*, at: dt.datetime | None = None) -> dt.date:
    return policies.window_start(
        period="daily", now=at or timezone.now(), tz=settings.RHETOR_TIMEZONE
    )


def percentile(sorted_values: Sequence[int], pct: int) -> int | None:
    """Nearest-rank percentile of ascending values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, -(-pct * len(sorted_values) // 100))  # ceil(pct/100 * n)
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class ModelStats:
    """One provider/model over a time range: request attempts, failures, latency of the
    answered attempts (p50/p95, milliseconds) and spend."""

    provider: str
    model: str
    requests: int
    errors: int
    p50_ms: int | None
    p95_ms: int | None
    cost_nanos: int

    @property
    def error_rate(self) -> float:
        return round(self.errors * 100 / self.requests, 1) if self.requests else 0.0


def usage_stats_by_model(
    *, since: dt.datetime, until: dt.datetime | None = None
) -> list[ModelStats]:
    """Per provider and model, busiest first. Two queries: the counts and spend grouped in
    SQL, then the answered attempts' latencies (for the percentiles)."""
    qs = UsageRecord.objects.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    groups = (
        qs.order_by()
        .values("provider", "model")
        .annotate(
            n=Count("id"),
            errors=Count("id", filter=Q(status=UsageRecord.Status.ERROR)),
            cost=Sum("cost_nanos"),
        )
    )
    latencies: dict[tuple[str, str], list[int]] = {}
    ok = qs.filter(status=UsageRecord.Status.OK).order_by("latency_ms")
    for provider, model, latency in ok.values_list("provider", "model", "latency_ms"):
        latencies.setdefault((provider, model), []).append(latency)
    stats = []
    for row in groups:
        values = latencies.get((row["provider"], row["model"]), [])
        stats.append(
            ModelStats(
                provider=row["provider"],
                model=row["model"],
                requests=row["n"],
                errors=row["errors"],
                p50_ms=percentile(values, 50),
                p95_ms=percentile(values, 95),
                cost_nanos=row["cost"] or 0,
            )
        )
    return sorted(stats, key=lambda s: (-s.requests, s.provider, s.model))


def usage_failure_list(*, limit: int = 10) -> QuerySet[UsageRecord]:
    """The newest failed attempts (status error), newest first."""
    return UsageRecord.objects.filter(status=UsageRecord.Status.ERROR).order_by(
        "-created_at", "-id"
    )[:limit]


def usage_breakdown(qs: QuerySet[UsageRecord], *, field: str) -> list[tuple[Any, UsageTotals]]:
    """Totals of `qs` per value of `field` (e.g. model, prompt_version), costliest first."""
    rows = (
        qs.order_by()
        .values(field)
        .annotate(
            cost=Sum("cost_nanos"), inp=Sum("input_tokens"), out=Sum("output_tokens"), n=Count("id")
        )
    )
    result = [
        (
            row[field],
            UsageTotals(
                cost_nanos=row["cost"] or 0,
                input_tokens=row["inp"] or 0,
                output_tokens=row["out"] or 0,
                count=row["n"],
            ),
        )
        for row in rows
    ]
    return sorted(result, key=lambda kv: (-kv[1].cost_nanos, str(kv[0])))


def component_spend_on(*, day: dt.date) -> list[tuple[str, UsageTotals]]:
    """Spend per component on one local day (the dashboard's "yesterday" table)."""
    start, end = day_range(day=day)
    qs = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    return [(k or "", v) for k, v in usage_breakdown(qs, field="component")]
