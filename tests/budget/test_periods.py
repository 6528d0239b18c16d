"""Budget windows under a controlled clock: midnight, Monday, the 1st, other time zones."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from budget import policies, services
from budget.errors import BudgetExceeded
from budget.models import SpendCounter
from budget.selectors import budget_status
from llm.providers.base import Usage

UTC = dt.UTC
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("_case", "period", "now", "tz", "start"),
    [
        (
            "daily_utc",
            "daily",
            dt.datetime(2026, 4, 24, 23, 59, 59, tzinfo=UTC),
            "UTC",
            dt.date(2026, 4, 24),
        ),
        (
            "daily_midnight",
            "daily",
            dt.datetime(2026, 4, 25, 0, 0, tzinfo=UTC),
            "UTC",
            dt.date(2026, 4, 25),
        ),
        (
            "weekly_sunday_night",
            "weekly",
            dt.datetime(2026, 4, 26, 23, 59, tzinfo=UTC),
            "UTC",
            dt.date(2026, 4, 20),
        ),
        (
            "weekly_monday",
            "weekly",
            dt.datetime(2026, 4, 27, 0, 0, tzinfo=UTC),
            "UTC",
            dt.date(2026, 4, 27),
        ),
        (
            "monthly_last_day",
            "monthly",
            dt.datetime(2026, 4, 30, 23, 59, tzinfo=UTC),
            "UTC",
            dt.date(2026, 4, 1),
        ),
        (
            "monthly_first",
            "monthly",
            dt.datetime(2026, 5, 1, 0, 0, tzinfo=UTC),
            "UTC",
            dt.date(2026, 5, 1),
        ),
        (
            "monthly_new_york_still_march",
            "monthly",
            dt.datetime(2026, 4, 1, 2, 0, tzinfo=UTC),
            "America/New_York",
            dt.date(2026, 3, 1),
        ),
        (
            "daily_tokyo_ahead",
            "daily",
            dt.datetime(2026, 4, 24, 15, 0, tzinfo=UTC),
            "Asia/Tokyo",
            dt.date(2026, 4, 25),
        ),
        (
            "weekly_leap_year",
            "weekly",
            dt.datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
            "UTC",
            dt.date(2028, 2, 28),
        ),
    ],
)
def test_window_start(_case, period, now, tz, start):
    assert policies.window_start(period=period, now=now, tz=tz) == start


def test_window_bounds_follow_dst_in_local_time():
    # New York springs forward on 2026-03-08: that local day has 23 hours.
    start, end = policies.window_bounds(
        period="daily", start=dt.date(2026, 3, 8), tz="America/New_York"
    )

    assert end.astimezone(UTC) - start.astimezone(UTC) == dt.timedelta(hours=23)
    assert start == dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC)


def test_monthly_window_end_in_december():
    _start, end = policies.window_bounds(period="monthly", start=dt.date(2026, 12, 1), tz="UTC")

    assert end.date() == dt.date(2027, 1, 1)


def _spend_all(reserve):
    r = reserve()
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 1000), status="ok", latency_ms=1
    )


@pytest.mark.parametrize(
    ("_case", "period", "before", "after"),
    [
        (
            "daily_at_midnight",
            "daily",
            dt.datetime(2026, 4, 24, 23, 59, 59, tzinfo=UTC),
            dt.datetime(2026, 4, 25, 0, 0, 0, tzinfo=UTC),
        ),
        (
            "weekly_on_monday",
            "weekly",
            dt.datetime(2026, 4, 26, 23, 59, 59, tzinfo=UTC),
            dt.datetime(2026, 4, 27, 0, 0, 0, tzinfo=UTC),
        ),
        (
            "monthly_on_the_first",
            "monthly",
            dt.datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC),
            dt.datetime(2026, 5, 1, 0, 0, 0, tzinfo=UTC),
        ),
    ],
)
@pytest.mark.django_db
def test_limit_resets_at_the_period_boundary(
    time_machine, set_limit, reserve, _case, period, before, after
):
    time_machine.move_to(before, tick=False)
    set_limit(period, "0.0015", "enforce")
    _spend_all(reserve)
    with pytest.raises(BudgetExceeded):
        reserve()

    time_machine.move_to(after, tick=False)
    r = reserve()

    assert r.reserved_nanos == 1_500_000
    assert getattr(budget_status(), period).usage_nanos == 0


@pytest.mark.django_db
def test_period_boundary_in_another_time_zone(settings, time_machine, set_limit, reserve):
    settings.RHETOR_TIMEZONE = "Asia/Tokyo"
    set_limit("daily", "0.0015", "enforce")
    # 14:59:59 UTC is 23:59:59 in Tokyo; 15:00 UTC is Tokyo's midnight.
    time_machine.move_to(dt.datetime(2026, 4, 24, 14, 59, 59, tzinfo=UTC), tick=False)
    _spend_all(reserve)
    with pytest.raises(BudgetExceeded):
        reserve()

    time_machine.move_to(dt.datetime(2026, 4, 24, 15, 0, 0, tzinfo=UTC), tick=False)
    reserve()

    windows = sorted(
        SpendCounter.objects.filter(period="daily", scope_kind="all").values_list(
            "window_start", flat=True
        )
    )
    assert windows == [dt.date(2026, 4, 24), dt.date(2026, 4, 25)]


@pytest.mark.django_db
def test_hold_across_midnight_is_released_from_old_window_and_charged_to_new(
    time_machine, set_limit, reserve
):
    set_limit("daily", "1", "enforce")
    time_machine.move_to(dt.datetime(2026, 4, 24, 23, 59, 59, tzinfo=UTC), tick=False)
    r = reserve()

    time_machine.move_to(dt.datetime(2026, 4, 25, 0, 0, 1, tzinfo=UTC), tick=False)
    services.budget_settle(
        reservation_id=r.reservation_id, usage=Usage(1000, 10), status="ok", latency_ms=2000
    )

    old = SpendCounter.objects.get(period="daily", scope_kind="all", window_start="2026-04-24")
    new = SpendCounter.objects.get(period="daily", scope_kind="all", window_start="2026-04-25")
    assert (old.spent_nanos, old.reserved_nanos) == (0, 0)
    assert (new.spent_nanos, new.reserved_nanos) == (1000 * 250 + 10 * 1250, 0)
