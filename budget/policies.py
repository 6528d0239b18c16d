"""Pure budget rules: money units, budget windows, tiers and warnings. No ORM here.

Money is an integer count of nano-USD (1 USD = 10**9 nanos) everywhere inside Rhetor; it
becomes a decimal string only at the edge (`usd`).
"""

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo

NANOS_PER_USD = 10**9

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
POLICIES = ("ignore", "warn", "enforce")
TIERS = ("free", "low", "medium", "high")

# Tier bounds on input+output cost per 1K tokens (TEKTON_CONTRACT "Budget"): free 0,
# low < $0.01, medium $0.01-0.05, high > $0.05. In nanos per 1K tokens:
LOW_TIER_BELOW = 10**7  # $0.01
MEDIUM_TIER_UP_TO = 5 * 10**7  # $0.05

# The warn policy speaks up once usage (spent + held) reaches this share of a limit.
WARN_RATIO_PERCENT = 80

INVALID_AMOUNT = "{value!r} is not a decimal amount of US dollars"
NEGATIVE_AMOUNT = "{value!r} is negative"
TOO_PRECISE = "{value!r} has more than 9 decimal places (the smallest unit is 1 nano-USD)"


class AmountError(ValueError):
    pass


def usd(nanos: int, *, places: int | None = None) -> str:
    """An integer of nano-USD as a plain decimal string of US dollars.

    Exact by default (trailing zeros trimmed, at least two decimals): 40500 -> "0.0000405",
    5 * 10**9 -> "5.00". With `places`, rounded half-up to that many decimals.
    """
    value = Decimal(nanos).scaleb(-9)
    if places is not None:
        return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def nanos_from_usd(value: str | Decimal | int) -> int:
    """Parse US dollars ("5", "0.25", Decimal) into exact nanos; refuse sub-nano precision
    and negative amounts rather than rounding money silently."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise AmountError(INVALID_AMOUNT.format(value=value)) from exc
    if not amount.is_finite():
        raise AmountError(INVALID_AMOUNT.format(value=value))
    if amount < 0:
        raise AmountError(NEGATIVE_AMOUNT.format(value=value))
    scaled = amount.scaleb(9)
    if scaled != scaled.to_integral_value():
        raise AmountError(TOO_PRECISE.format(value=value))
    return int(scaled)


def cost_nanos(
    *, input_tokens: int, output_tokens: int, input_price: int, output_price: int
) -> int:
    """Cost of a request in nanos; prices are nanos per token."""
    return input_tokens * input_price + output_tokens * output_price


def per_1k_tokens(*, input_price: int, output_price: int) -> int:
    """Input+output cost of 1K tokens in nanos: the quantity the tiers are defined on."""
    return (input_price + output_price) * 1000


def tier_for(*, input_price: int, output_price: int) -> str:
    per_1k = per_1k_tokens(input_price=input_price, output_price=output_price)
    if per_1k == 0:
        return "free"
    if per_1k < LOW_TIER_BELOW:
        return "low"
    if per_1k <= MEDIUM_TIER_UP_TO:
        return "medium"
    return "high"


# --- Windows ---------------------------------------------------------------------------


def window_start(*, period: str, now: dt.datetime, tz: str) -> dt.date:
    """The local date on which `period`'s current window began: today for daily, the
    Monday of this week for weekly, the 1st for monthly, in time zone `tz`."""
    local = now.astimezone(ZoneInfo(tz)).date()
    if period == "daily":
        return local
    if period == "weekly":
        return local - dt.timedelta(days=local.weekday())
    if period == "monthly":
        return local.replace(day=1)
    raise ValueError(f"unknown period {period!r}")


def next_window_start(*, period: str, start: dt.date) -> dt.date:
    if period == "daily":
        return start + dt.timedelta(days=1)
    if period == "weekly":
        return start + dt.timedelta(days=7)
    if period == "monthly":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    raise ValueError(f"unknown period {period!r}")


def window_bounds(*, period: str, start: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a window as aware datetimes: local midnights, DST-correct."""
    zone = ZoneInfo(tz)
    end = next_window_start(period=period, start=start)
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=zone),
        dt.datetime.combine(end, dt.time.min, tzinfo=zone),
    )


# --- Model names -------------------------------------------------------------------------

_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def model_family(model: str) -> str:
    """A model id without its release-date or `-latest` suffix: the key prices are listed
    under (claude-3-opus-20240229 -> claude-3-opus, gpt-4o-2024-08-06 -> gpt-4o)."""
    return _VERSION_SUFFIX.sub("", model)


# --- Warnings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitUse:
    """One limit as a request sees it after its hold was placed."""

    period: str
    scope: str  # "all", "provider:<id>" or "component:<name>"
    limit: int
    used_before: int  # spent + held before this request
    needed: int


def scope_label(scope: str) -> str:
    if scope == "all":
        return "all providers"
    kind, _, value = scope.partition(":")
    return f"{kind} {value}"


def warnings_for(use: LimitUse) -> list[str]:
    """Warn-policy messages: one when usage reaches 80% of the limit, one when this request
    crosses it (or usage is already beyond it)."""
    after = use.used_before + use.needed
    label = f"{use.period} budget for {scope_label(use.scope)}"
    if after > use.limit:
        verb = "exceeded" if use.used_before > use.limit else "crossed"
        return [
            f"{label} {verb}: ${usd(after)} of ${usd(use.limit)} with this request"
            " (policy warn: request served)"
        ]
    if use.limit > 0 and after * 100 >= use.limit * WARN_RATIO_PERCENT:
        pct = after * 100 // use.limit
        return [f"{label} at {pct}%: ${usd(after)} of ${usd(use.limit)}"]
    return []


def affordable_output_tokens(
    *, remaining: int, input_tokens: int, input_price: int, output_price: int
) -> int:
    """How many output tokens fit in `remaining` nanos after the prompt is paid for."""
    left = remaining - input_tokens * input_price
    if left < 0:
        return 0
    if output_price == 0:
        return 2**62
    return left // output_price
