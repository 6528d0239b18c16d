"""Reserve: hold a request's worst case against every limit that applies, before it goes
upstream (HOUSE_STYLE R10, phase 1). Settle (`budget.services.settle`) later releases the
hold and charges the actual cost."""

import datetime as dt
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from budget import policies
from budget.errors import BUDGET_EXCEEDED, NEGATIVE_TOKENS, BudgetExceeded
from budget.models import BudgetReservation, Policy, SpendCounter
from budget.selectors import EffectiveLimit, budget_config_checked
from budget.services.counters import (
    CounterKey,
    counter_add,
    counter_get,
    counter_hold,
    counter_keys,
    key_to_json,
)
from budget.services.prices import model_price_quote
from budget.services.rows import row_insert
from rhetor_site.db import released
from rhetor_site.errors import InvalidInput

BYPASS_REFUSED = (
    "budget bypass requested but not allowed (RHETOR_ALLOW_BUDGET_BYPASS is off): limits enforced"
)
MAX_TOKENS_LOWERED = (
    "max_tokens lowered from {requested} to {allowed} to fit the remaining {period} budget "
    "for {scope}"
)


@dataclass(frozen=True)
class Reservation:
    """What `budget_reserve` held for one attempt of one request."""

    reservation_id: int
    request_id: uuid.UUID
    attempt: int
    provider: str
    model: str
    reserved_nanos: int
    price_id: int
    price_is_fallback: bool
    input_price: int  # nano-USD per token
    output_price: int
    bypassed: bool = False
    # Set when max_tokens had to be lowered to fit the budget (allow_lower_max_tokens).
    max_tokens_allowed: int | None = None
    warnings: list[str] = field(default_factory=list)


def budget_reserve(
    *,
    request_id: uuid.UUID,
    attempt: int,
    provider: str,
    model: str,
    component: str,
    task_type: str,
    context_id: str,
    input_tokens: int,
    max_tokens: int,
    prompt_version_id: int | None = None,
    is_fallback: bool = False,
    bypass: bool = False,
    allow_lower_max_tokens: bool = False,
    min_max_tokens: int = 1,
) -> Reservation:
    """Hold the worst case (input_tokens + max_tokens at the model's price) against every
    limit that applies (all / provider / component x daily / weekly / monthly), all or
    nothing, in one short transaction.

    Raises BudgetExceeded (402) when an enforce-policy limit cannot hold it; nothing is
    held then. With `allow_lower_max_tokens`, max_tokens is first lowered to what the
    tightest enforce limit still affords (at least `min_max_tokens`), and the Reservation
    says so in `max_tokens_allowed` and `warnings`. `bypass` takes effect only when
    RHETOR_ALLOW_BUDGET_BYPASS is on; the hold is then unconditional and marked.
    """
    if input_tokens < 0:
        raise InvalidInput(
            NEGATIVE_TOKENS.format(field="input_tokens", value=input_tokens), field="input_tokens"
        )
    if max_tokens < 0:
        raise InvalidInput(
            NEGATIVE_TOKENS.format(field="max_tokens", value=max_tokens), field="max_tokens"
        )
    now = timezone.now()
    quote = model_price_quote(provider=provider, model=model, now=now)
    price = quote.price
    warnings: list[str] = []
    bypassed = False
    if bypass:
        if settings.RHETOR_ALLOW_BUDGET_BYPASS:
            bypassed = True
        else:
            warnings.append(BYPASS_REFUSED)
    limits = [
        lim
        for lim in budget_config_checked().limits_for(provider=provider, component=component)
        if lim.limit_nanos is not None and lim.policy != Policy.IGNORE
    ]

    def cost(out: int) -> int:
        return policies.cost_nanos(
            input_tokens=input_tokens,
            output_tokens=out,
            input_price=price.input_price,
            output_price=price.output_price,
        )

    allowed_tokens: int | None = None
    needed = cost(max_tokens)
    held: list[CounterKey] = []
    with transaction.atomic():
        if needed > 0 and limits:
            try:
                # A refusal without a second try propagates and rolls the whole transaction
                # back; only a retry with lowered max_tokens needs a savepoint.
                with transaction.atomic() if allow_lower_max_tokens else nullcontext():
                    held, hold_warnings = _place_holds(
                        limits=limits, needed=needed, now=now, bypass=bypassed
                    )
            except _Refused as refused:
                if not allow_lower_max_tokens:
                    raise _exceeded(refused.refusal, provider=provider, model=model) from None
                room, tight = _headroom(limits, now=now)
                fits = policies.affordable_output_tokens(
                    remaining=room,
                    input_tokens=input_tokens,
                    input_price=price.input_price,
                    output_price=price.output_price,
                )
                if fits < min_max_tokens or fits >= max_tokens:
                    raise _exceeded(refused.refusal, provider=provider, model=model) from None
                needed = cost(fits)
                try:
                    with transaction.atomic():
                        held, hold_warnings = _place_holds(
                            limits=limits, needed=needed, now=now, bypass=False
                        )
                except _Refused as again:
                    raise _exceeded(again.refusal, provider=provider, model=model) from None
                allowed_tokens = fits
                hold_warnings.insert(
                    0,
                    MAX_TOKENS_LOWERED.format(
                        requested=max_tokens,
                        allowed=fits,
                        period=tight.period,
                        scope=policies.scope_label(tight.scope),
                    ),
                )
            warnings.extend(hold_warnings)
        row = row_insert(
            BudgetReservation(
                request_id=request_id,
                attempt=attempt,
                provider=provider,
                model=model,
                component=component,
                task_type=task_type,
                context_id=context_id,
                prompt_version_id=prompt_version_id,
                input_tokens=input_tokens,
                max_tokens=allowed_tokens if allowed_tokens is not None else max_tokens,
                reserved_nanos=needed,
                price_id=price.pk,
                price_is_fallback=quote.is_fallback,
                is_fallback=is_fallback,
                bypassed=bypassed,
                held_counters=[key_to_json(key) for key in held],
                created_at=now,
            )
        )
    return Reservation(
        reservation_id=row.pk,
        request_id=request_id,
        attempt=attempt,
        provider=provider,
        model=model,
        reserved_nanos=row.reserved_nanos,
        price_id=price.pk,
        price_is_fallback=quote.is_fallback,
        input_price=price.input_price,
        output_price=price.output_price,
        bypassed=bypassed,
        max_tokens_allowed=allowed_tokens,
        warnings=warnings,
    )


# The async twin gives a pooled connection back as soon as it is done (rhetor_site.db): a
# request must not hold one across its provider call.
abudget_reserve = sync_to_async(released(budget_reserve))


# --- Holds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refusal:
    limit: EffectiveLimit
    counter: SpendCounter
    needed: int


class _Refused(Exception):
    def __init__(self, refusal: _Refusal) -> None:
        super().__init__("refused")
        self.refusal = refusal


def _place_holds(
    *,
    limits: list[EffectiveLimit],
    needed: int,
    now: dt.datetime,
    bypass: bool,
) -> tuple[list[CounterKey], list[str]]:
    """Hold `needed` on the counter of every limit, in key order; returns the keys held
    and the warnings of warn-policy (or bypassed) limits. Raises _Refused when an enforce
    limit cannot hold it (the caller's transaction then rolls every hold back)."""
    held: list[CounterKey] = []
    warnings: list[str] = []
    keys = counter_keys([(lim.period, lim.scope_kind, lim.scope_value) for lim in limits], now=now)
    for key, lim in sorted(zip(keys, limits, strict=True)):
        assert lim.limit_nanos is not None  # noqa: S101 - filtered by the caller
        if lim.policy == Policy.ENFORCE and not bypass:
            refused_by = counter_hold(key, needed=needed, limit=lim.limit_nanos)
            if refused_by is not None:
                raise _Refused(_Refusal(limit=lim, counter=refused_by, needed=needed))
            held.append(key)
            continue
        used = counter_add(key, needed=needed)
        held.append(key)
        use = policies.LimitUse(
            period=lim.period,
            scope=lim.scope,
            limit=lim.limit_nanos,
            used_before=used - needed,
            needed=needed,
        )
        for message in policies.warnings_for(use):
            if lim.policy == Policy.ENFORCE:  # bypassed
                message = message.replace("policy warn: request served", "budget bypassed")
            warnings.append(message)
    return held, warnings


def _exceeded(refusal: _Refusal, *, provider: str, model: str) -> BudgetExceeded:
    lim, counter = refusal.limit, refusal.counter
    details = {
        "period": lim.period,
        "scope": lim.scope,
        "limit": policies.usd(lim.limit_nanos or 0),
        "spent": policies.usd(counter.used_nanos),
        "reserved": policies.usd(counter.reserved_nanos),
        "needed": policies.usd(refusal.needed),
        "provider": provider,
        "model": model,
    }
    message = BUDGET_EXCEEDED.format(
        period=lim.period,
        scope_label=policies.scope_label(lim.scope),
        spent=details["spent"],
        reserved=details["reserved"],
        limit=details["limit"],
        needed=details["needed"],
    )
    return BudgetExceeded(message, **details)


def _headroom(limits: list[EffectiveLimit], *, now: dt.datetime) -> tuple[int, EffectiveLimit]:
    """The smallest room left under the enforce limits, and the limit that sets it."""
    best: tuple[int, EffectiveLimit] | None = None
    for lim in limits:
        if lim.policy != Policy.ENFORCE or lim.limit_nanos is None:
            continue
        [key] = counter_keys([(lim.period, lim.scope_kind, lim.scope_value)], now=now)
        counter = counter_get(key)
        room = lim.limit_nanos - (counter.used_nanos + counter.reserved_nanos)
        if best is None or room < best[0]:
            best = (room, lim)
    assert best is not None  # noqa: S101 - only called after an enforce refusal
    return best
