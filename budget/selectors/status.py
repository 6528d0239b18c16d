"""Budget status: usage, holds, limit and policy of the current window of each period
(GET /budget, the WebSocket STATUS reply, the dashboards)."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from budget import policies
from budget.models import BudgetLimit, Policy, SpendCounter
from budget.selectors.limits import effective_limit_list, env_default_policy, limit_from_row


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
            limit_from_row(row)
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
