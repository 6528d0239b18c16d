"""Reports from the usage ledger: listings, totals and summaries, the admin's spend chart
and the operator dashboard's statistics."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from budget import policies
from budget.models import UsageRecord
from budget.selectors.status import current_window


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
