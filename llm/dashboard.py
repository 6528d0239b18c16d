"""The operator dashboard (the admin's front page): what is spent against the limits, spend
per day by provider, how each provider and model behaved over the last 24 hours, which
providers are available now, and the last failed requests.

`dashboard_context()` gathers it from the selectors; the template
`admin/rhetor_index.html` draws it (charts as server-side SVG, budget/charts.py).
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from budget import charts
from budget import selectors as budget_selectors
from budget.policies import usd
from budget.selectors import BudgetStatus, ModelStats, PeriodStatus
from llm.selectors import provider_availability

WARN_AT_PERCENT = 80
LABELS = {"daily": "Today", "weekly": "This week", "monthly": "This month"}


@dataclass(frozen=True)
class SpendBar:
    period: str
    label: str
    used: str
    held: str
    limit: str | None
    percentage: float | None
    width: int  # 0..100, the bar's filled share
    level: str  # "none" (no limit), "ok", "warn" (>= 80%), "over" (past the limit)
    policy: str
    ledger_url: str


def spend_level(status: PeriodStatus) -> str:
    if status.limit_nanos is None:
        return "none"
    if status.usage_nanos > status.limit_nanos:
        return "over"
    if (status.percentage or 0) >= WARN_AT_PERCENT:
        return "warn"
    return "ok"


def ledger_url(**params: str) -> str:
    url = reverse("admin:budget_usagerecord_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def spend_bars(status: BudgetStatus) -> list[SpendBar]:
    bars = []
    for period in (status.daily, status.weekly, status.monthly):
        pct = period.percentage
        bars.append(
            SpendBar(
                period=period.period,
                label=LABELS[period.period],
                used=usd(period.usage_nanos),
                held=usd(period.reserved_nanos),
                limit=None if period.limit_nanos is None else usd(period.limit_nanos),
                percentage=pct,
                width=0 if pct is None else max(0, min(100, round(pct))),
                level=spend_level(period),
                policy=period.policy,
                ledger_url=ledger_url(window=period.period),
            )
        )
    return bars


@dataclass(frozen=True)
class ModelRow:
    stats: ModelStats
    cost: str
    ledger_url: str
    errors_url: str


@dataclass(frozen=True)
class ComponentDay:
    component: str
    cost: str
    requests: int
    ledger_url: str


@dataclass(frozen=True)
class FailedRequest:
    created_at: dt.datetime
    provider: str
    model: str
    component: str
    error: str
    url: str


def circuit_breaker_rows() -> list[Any] | None:
    """CIRCUIT BREAKERS: the states llm.circuit provides (`breaker_states()`), or None when
    it provides none, in which case the dashboard shows no circuit-breaker section."""
    try:
        from llm import circuit
    except ImportError:  # pragma: no cover - the module is part of the app
        return None
    states = getattr(circuit, "breaker_states", None)
    return list(states()) if callable(states) else None


def dashboard_context(*, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    status = budget_selectors.budget_status(at=now)
    days, by_provider = budget_selectors.daily_spend_by(field="provider", days=30, at=now)
    since = now - dt.timedelta(hours=24)
    models = [
        ModelRow(
            stats=s,
            cost=usd(s.cost_nanos),
            ledger_url=ledger_url(provider=s.provider, model=s.model),
            errors_url=ledger_url(provider=s.provider, model=s.model, status__exact="error"),
        )
        for s in budget_selectors.usage_stats_by_model(since=since)
    ]
    yesterday = budget_selectors.local_today(at=now) - dt.timedelta(days=1)
    components = [
        ComponentDay(
            component=component or "(none)",
            cost=usd(totals.cost_nanos),
            requests=totals.count,
            ledger_url=ledger_url(component=component, day="yesterday"),
        )
        for component, totals in budget_selectors.component_spend_on(day=yesterday)
    ]
    failures = [
        FailedRequest(
            created_at=r.created_at,
            provider=r.provider,
            model=r.model,
            component=r.component,
            error=r.error or "(no message)",
            url=reverse("admin:budget_usagerecord_change", args=[r.pk]),
        )
        for r in budget_selectors.usage_failure_list(limit=10)
    ]
    availability = async_to_sync(provider_availability)()
    return {
        "spend_bars": spend_bars(status),
        "daily_chart": charts.stacked_daily(days=days, series=by_provider),
        "first_day": days[0],
        "last_day": days[-1],
        "model_rows": models,
        "yesterday": yesterday,
        "yesterday_components": components,
        "availability": availability,
        "failures": failures,
        "failures_url": ledger_url(status__exact="error"),
        "circuit_breakers": circuit_breaker_rows(),
    }
