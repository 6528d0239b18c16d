"""Budget writes: reserve -> settle (R10), limits and policies, prices, operator resets.

Race-freedom rests on one rule (R6): a spend counter changes only through a single SQL
UPDATE with `F()` expressions, and a hold against an enforce-policy limit is the
conditional UPDATE `... WHERE spent - baseline + reserved <= limit - needed`. One request's
holds on several counters run in one transaction, in one global order of counter keys (so
two transactions never wait on each other in a cycle), and a refused hold rolls back every
hold the request placed before it.
"""

import asyncio
import contextvars
import datetime as dt
import functools
import json
import logging
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Field, Model, QuerySet
from django.utils import timezone

from budget import policies
from budget.errors import (
    BUDGET_EXCEEDED,
    RESERVATION_NOT_FOUND,
    BudgetExceeded,
    ReservationNotFound,
)
from budget.models import (
    BudgetLimit,
    BudgetReservation,
    BudgetReset,
    ModelPrice,
    Policy,
    SpendCounter,
    UnpricedModel,
    UsageRecord,
)
from budget.prices import SEED_EFFECTIVE_FROM, SEED_PRICES, SEED_SOURCE
from budget.selectors import (
    BudgetConfig,
    EffectiveLimit,
    PriceQuote,
    budget_config,
    budget_config_changed,
    budget_config_drop,
    budget_limits_fingerprint,
    env_default_limits,
    env_default_policy,
    model_price_get,
)
from rhetor_site.db import released
from rhetor_site.errors import InvalidInput

logger = logging.getLogger("budget")

__all__ = [
    "Reservation",
    "TokenUsage",
    "abudget_reserve",
    "abudget_settle",
    "budget_config_touched",
    "budget_limit_set",
    "budget_policy_set",
    "budget_reserve",
    "budget_reset",
    "budget_settle",
    "cost_for",
    "model_price_set",
    "model_prices_seed",
    "reservation_release_stale",
    "usd",
]

usd = policies.usd


class TokenUsage(Protocol):
    """What budget reads of a request's token usage. The gateway passes its own usage type
    (llm's `Usage`); budget imports nothing from the layer above it."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    # Where the counts come from: "provider" (reported upstream), "estimate" or "partial"
    # (UsageRecord.Source).
    @property
    def source(self) -> str: ...


NO_PRICE = "No price is known for {provider}/{model}, and no other price exists to charge it at"
BAD_STATUS = "status must be one of ok, error, cancelled (got {status!r})"
BAD_PERIOD = "period must be one of daily, weekly, monthly (got {period!r})"
BAD_POLICY = "policy must be one of ignore, warn, enforce (got {policy!r})"
BAD_SCOPE = "scope must be all, provider:<id> or component:<name> (got {scope!r})"
NEGATIVE_TOKENS = "{field} must not be negative (got {value})"
PRICE_IN_USE = (
    "The price of {provider}/{model} from {effective_from} has been charged already; "
    "set a new price with a later start instead"
)
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


# --- Counters ------------------------------------------------------------------------------

CounterKey = tuple[str, str, str, dt.date]  # period, scope_kind, scope_value, window_start

# Counter rows are never deleted, so their ids can be remembered per process. A stale id
# (a test rolled its rows back) is detected by a 0-row UPDATE and re-resolved.
_counter_ids: dict[CounterKey, int] = {}
_counter_lock = threading.Lock()


def _counter_key_dict(key: CounterKey) -> dict[str, object]:
    period, kind, value, start = key
    return {"period": period, "scope_kind": kind, "scope_value": value, "window_start": start}


def _counter_id(key: CounterKey, *, fresh: bool = False) -> int:
    """The id of the counter for `key`, creating it if needed (INSERT ... ON CONFLICT DO
    NOTHING, so concurrent creators agree on one row)."""
    if not fresh:
        cid = _counter_ids.get(key)
        if cid is not None:
            return cid
    lookup = _counter_key_dict(key)
    row = SpendCounter.objects.filter(**lookup).values_list("id", flat=True).first()
    if row is None:
        SpendCounter.objects.bulk_create([SpendCounter(**lookup)], ignore_conflicts=True)
        row = SpendCounter.objects.filter(**lookup).values_list("id", flat=True).get()
    # Other threads use the id only once it is committed: a row this transaction created
    # is invisible to them until then, and a settle that took its id from here would not
    # find it in its batched UPDATE, then wait for the creator out of key order (deadlock).
    transaction.on_commit(functools.partial(_counter_remember, key, row))
    return row


def _counter_remember(key: CounterKey, cid: int) -> None:
    with _counter_lock:
        _counter_ids[key] = cid


def _counter_qs(key: CounterKey, cid: int) -> QuerySet[SpendCounter]:
    """The counter row by id *and* natural key: a remembered id that no longer names this
    counter (rows rolled back, ids reused) matches nothing instead of the wrong row."""
    return SpendCounter.objects.filter(pk=cid, **_counter_key_dict(key))


def _counter_get(key: CounterKey) -> SpendCounter:
    row = _counter_qs(key, _counter_id(key)).first()
    if row is None:
        row = _counter_qs(key, _counter_id(key, fresh=True)).get()
    return row


def _counter_update(key: CounterKey, **changes: object) -> int:
    """Unconditional F() update of one counter; returns its id."""
    cid = _counter_id(key)
    if _counter_qs(key, cid).update(**changes) == 1:
        return cid
    cid = _counter_id(key, fresh=True)
    if _counter_qs(key, cid).update(**changes) != 1:  # pragma: no cover
        raise RuntimeError(f"spend counter {key} vanished")
    return cid


def _counter_move(key: CounterKey, *, release: int, charge: int) -> None:
    """`reserved -= release, spent += charge` on one counter: the same single UPDATE as
    `_counter_update` (by id and natural key), written as SQL once instead of compiled by
    the ORM for every counter of every settle (six to nine of them per request)."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    cid = _counter_id(key)
    period, kind, value, start = key
    with db.cursor() as cursor:
        cursor.execute(
            _counter_move_sql(),
            [
                release,
                charge,
                cid,
                period,
                kind,
                value,
                db.ops.adapt_datefield_value(start),
            ],
        )
        if cursor.rowcount == 1:
            return
    # A remembered id that no longer names this counter: re-resolve it, the ORM way.
    _counter_update(
        key,
        reserved_nanos=F("reserved_nanos") - release,
        spent_nanos=F("spent_nanos") + charge,
    )


@functools.cache
def _counter_move_sql() -> str:
    q = connection.ops.quote_name
    # Quoted identifiers of our own model; every value is a parameter.
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} - %s, "
        f"{q('spent_nanos')} = {q('spent_nanos')} + %s "
        f"WHERE {_counters_match(1)}"
    )


def _counter_hold(key: CounterKey, cid: int, *, needed: int, headroom: int) -> bool:
    """The enforce check (R6): `reserved += needed` on the counter (by id and natural key)
    only if `spent - baseline + reserved <= headroom` (the limit less what is needed). One
    conditional UPDATE, written as SQL once; True when it held."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    period, kind, value, start = key
    with db.cursor() as cursor:
        cursor.execute(
            _counter_hold_sql(db.vendor),
            [
                needed,
                cid,
                period,
                kind,
                value,
                db.ops.adapt_datefield_value(start),
                headroom,
            ],
        )
        return bool(cursor.rowcount == 1)


@functools.cache
def _counter_hold_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    # Quoted identifiers of our own model; every value is a parameter.
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} + %s "
        f"WHERE {_counters_match(1)} "
        f"AND {q('spent_nanos')} - {q('baseline_nanos')} + {q('reserved_nanos')} <= %s"
    )


def _counter_add(key: CounterKey, *, needed: int) -> int:
    """Unconditional `reserved += needed` on a counter (a warn-policy or bypassed hold);
    returns its usage after the hold (`spent - baseline + reserved`). One UPDATE ...
    RETURNING where the database has it."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    cid = _counter_id(key)
    if db.features.can_return_columns_from_insert:
        period, kind, value, start = key
        with db.cursor() as cursor:
            cursor.execute(
                _counter_add_sql(db.vendor),
                [needed, cid, period, kind, value, db.ops.adapt_datefield_value(start)],
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
    # A stale remembered id (or no RETURNING): the ORM way, which re-resolves it.
    cid = _counter_update(key, reserved_nanos=F("reserved_nanos") + needed)
    counter = _counter_qs(key, cid).get()
    return counter.used_nanos + counter.reserved_nanos


@functools.cache
def _counter_add_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    # Quoted identifiers of our own model; every value is a parameter.
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} + %s "
        f"WHERE {_counters_match(1)} "
        f"RETURNING {q('spent_nanos')} - {q('baseline_nanos')} + {q('reserved_nanos')}"
    )


def _request_keys(*, provider: str, component: str, now: dt.datetime) -> list[CounterKey]:
    tz = settings.RHETOR_TIMEZONE
    scopes = [("all", ""), ("provider", provider)]
    if component:
        scopes.append(("component", component))
    return sorted(
        (period, kind, value, policies.window_start(period=period, now=now, tz=tz))
        for period in policies.PERIODS
        for kind, value in scopes
    )


# --- Reserve ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refusal:
    limit: EffectiveLimit
    counter: SpendCounter | None
    needed: int


class _Refused(Exception):
    def __init__(self, refusal: _Refusal) -> None:
        super().__init__("refused")
        self.refusal = refusal


def _config() -> BudgetConfig:
    """This worker's prices and limits, its limits checked against the database's (one
    small aggregate; see `budget_limits_fingerprint`)."""
    config = budget_config()
    if config.limits_fingerprint != budget_limits_fingerprint():
        budget_config_drop()
        config = budget_config()
    return config


def _quote(*, provider: str, model: str, now: dt.datetime) -> PriceQuote:
    quote = budget_config().quote(provider=provider, model=model, at=now)
    if quote is None:
        # An empty price table (a test flushed the database): restore the seed and retry
        # (on fresh rows: this worker's copy may be what was empty).
        model_prices_seed()
        budget_config_touched()
        quote = budget_config().quote(provider=provider, model=model, at=now)
    if quote is None:
        raise InvalidInput(NO_PRICE.format(provider=provider, model=model), field="model")
    if quote.is_fallback:
        # Flag it for the admin (only this rare path writes outside the main transaction).
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


def _place_holds(
    *,
    limits: list[EffectiveLimit],
    needed: int,
    now: dt.datetime,
    bypass: bool,
) -> tuple[list[CounterKey], list[str]]:
    """Hold `needed` on the counter of every limit (sorted key order). Raises _Refused
    (after which the caller's savepoint rolls every hold back)."""
    tz = settings.RHETOR_TIMEZONE
    held: list[CounterKey] = []
    warnings: list[str] = []
    keyed = sorted(
        (
            (
                lim.period,
                lim.scope_kind,
                lim.scope_value,
                policies.window_start(period=lim.period, now=now, tz=tz),
            ),
            lim,
        )
        for lim in limits
    )
    for key, lim in keyed:
        assert lim.limit_nanos is not None  # noqa: S101 - filtered by the caller
        if lim.policy == Policy.ENFORCE and not bypass:
            cid = _counter_id(key)
            headroom = lim.limit_nanos - needed
            for fresh in (False, True):
                if fresh:
                    cid = _counter_id(key, fresh=True)
                if _counter_hold(key, cid, needed=needed, headroom=headroom):
                    break
                counter = _counter_qs(key, cid).first()
                if counter is not None:
                    raise _Refused(_Refusal(limit=lim, counter=counter, needed=needed))
            else:  # pragma: no cover - the row was just created
                raise RuntimeError(f"spend counter {key} vanished")
            held.append(key)
            continue
        used = _counter_add(key, needed=needed)
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
    spent = counter.used_nanos if counter else 0
    reserved = counter.reserved_nanos if counter else 0
    limit = lim.limit_nanos or 0
    details = {
        "period": lim.period,
        "scope": lim.scope,
        "limit": usd(limit),
        "spent": usd(spent),
        "reserved": usd(reserved),
        "needed": usd(refusal.needed),
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
    tz = settings.RHETOR_TIMEZONE
    best: tuple[int, EffectiveLimit] | None = None
    for lim in limits:
        if lim.policy != Policy.ENFORCE or lim.limit_nanos is None:
            continue
        key = (
            lim.period,
            lim.scope_kind,
            lim.scope_value,
            policies.window_start(period=lim.period, now=now, tz=tz),
        )
        counter = _counter_get(key)
        used = counter.used_nanos + counter.reserved_nanos
        room = lim.limit_nanos - used
        if best is None or room < best[0]:
            best = (room, lim)
    assert best is not None  # noqa: S101 - only called after an enforce refusal
    return best


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
    quote = _quote(provider=provider, model=model, now=now)
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
        for lim in _config().limits_for(provider=provider, component=component)
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
        row = _insert(
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
                held_counters=[[k[0], k[1], k[2], k[3].isoformat()] for k in held],
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


# --- Settle ---------------------------------------------------------------------------------


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


_STATUSES = {s.value for s in UsageRecord.Status}


@transaction.atomic
def budget_settle(
    *,
    reservation_id: int,
    usage: TokenUsage | None,
    status: str,
    latency_ms: int,
    error: str = "",
) -> UsageRecord:
    """Release the hold, charge the actual cost of `usage` (nothing when None) at the price
    the reservation was quoted, and create the attempt's append-only UsageRecord.

    Idempotent: a second call (even a concurrent one) changes nothing and returns the
    record the first one created.
    """
    if status not in _STATUSES:
        raise InvalidInput(BAD_STATUS.format(status=status), field="status")
    if usage is not None:
        for name in ("input_tokens", "output_tokens"):
            value = getattr(usage, name)
            if value < 0:
                raise InvalidInput(NEGATIVE_TOKENS.format(field=name, value=value), field=name)
    now = timezone.now()
    resv = _claim(reservation_id, now=now)
    if resv is None:
        existing = UsageRecord.objects.filter(reservation_id=reservation_id).first()
        if existing is not None:
            return existing
        raise ReservationNotFound(
            RESERVATION_NOT_FOUND.format(reservation_id=reservation_id),
            reservation_id=reservation_id,
        )
    charged = 0
    if usage is not None:
        charged = policies.cost_nanos(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            input_price=resv.input_price,
            output_price=resv.output_price,
        )

    # Release on the reservation's windows, charge the settle-time windows, in the same
    # global key order as reserve.
    deltas: dict[CounterKey, list[int]] = {}
    for period, kind, value, start in resv.held_counters:
        key = (period, kind, value, dt.date.fromisoformat(start))
        deltas.setdefault(key, [0, 0])[0] += resv.reserved_nanos
    if charged:
        for key in _request_keys(provider=resv.provider, component=resv.component, now=now):
            deltas.setdefault(key, [0, 0])[1] += charged
    _counters_move([(key, *_pair(deltas[key])) for key in sorted(deltas) if any(deltas[key])])

    source = UsageRecord.Source.NONE if usage is None else UsageRecord.Source(usage.source)
    return _insert(
        UsageRecord(
            request_id=resv.request_id,
            attempt=resv.attempt,
            reservation_id=resv.id,
            provider=resv.provider,
            model=resv.model,
            component=resv.component,
            task_type=resv.task_type,
            context_id=resv.context_id,
            prompt_version_id=resv.prompt_version_id,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_nanos=charged,
            reserved_nanos=resv.reserved_nanos,
            price_id=resv.price_id,
            price_is_fallback=resv.price_is_fallback,
            status=status,
            source=source,
            is_fallback=resv.is_fallback,
            bypassed=resv.bypassed,
            latency_ms=max(0, latency_ms),
            error=error,
            created_at=now,
        )
    )


_Row = TypeVar("_Row", BudgetReservation, UsageRecord)


def _insert(obj: _Row) -> _Row:
    """`obj.save()` of a new reservation or usage record without the ORM compiling the same
    INSERT twice per request: each field's value is prepared as the ORM prepares it
    (`get_db_prep_save`), into one INSERT ... RETURNING id written once per model. Neither
    model has save() overrides or signal receivers."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    model = type(obj)
    fields = _insert_fields(model)
    params = [f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields]
    with db.cursor() as cursor:
        if db.features.can_return_columns_from_insert:
            cursor.execute(_insert_sql(model, db.vendor, returning=True), params)
            obj.pk = cursor.fetchone()[0]
        else:  # pragma: no cover - SQLite < 3.35
            cursor.execute(_insert_sql(model, db.vendor, returning=False), params)
            obj.pk = cursor.lastrowid
    obj._state.adding = False
    obj._state.db = db.alias
    return obj


@functools.cache
def _insert_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


@functools.cache
def _insert_sql(model: type[Model], vendor: str, *, returning: bool) -> str:
    q = connection.ops.quote_name
    fields = _insert_fields(model)
    columns = ", ".join(q(str(f.column)) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    # Quoted identifiers of our own models; every value is a parameter.
    sql = f"INSERT INTO {q(model._meta.db_table)} ({columns}) VALUES ({values})"  # noqa: S608
    return sql + (f" RETURNING {q(str(model._meta.pk.column))}" if returning else "")


def _pair(delta: list[int]) -> tuple[int, int]:
    return delta[0], delta[1]


@dataclass(frozen=True)
class _Claimed:
    """A reservation as `budget_settle` claimed it, with its price's current per-token
    prices (read in the same statement)."""

    id: int
    request_id: uuid.UUID
    attempt: int
    provider: str
    model: str
    component: str
    task_type: str
    context_id: str
    prompt_version_id: int | None
    reserved_nanos: int
    price_id: int
    price_is_fallback: bool
    is_fallback: bool
    bypassed: bool
    held_counters: list[list[str]]
    input_price: int
    output_price: int


_CLAIMED_COLUMNS = (
    "id",
    "request_id",
    "attempt",
    "provider",
    "model",
    "component",
    "task_type",
    "context_id",
    "prompt_version_id",
    "reserved_nanos",
    "price_id",
    "price_is_fallback",
    "is_fallback",
    "bypassed",
    "held_counters",
)


def _claim(reservation_id: int, *, now: dt.datetime) -> _Claimed | None:
    """Mark a held reservation settled and read it back: one UPDATE ... RETURNING where the
    database has it (PostgreSQL, SQLite >= 3.35), else the UPDATE and a SELECT. None when
    it is not held (settled already, or unknown)."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    held, settled = BudgetReservation.State.HELD, BudgetReservation.State.SETTLED
    if not db.features.can_return_columns_from_insert:  # pragma: no cover - old SQLite
        claimed = BudgetReservation.objects.filter(pk=reservation_id, state=held).update(
            state=settled, settled_at=now
        )
        if claimed == 0:
            return None
        resv = BudgetReservation.objects.select_related("price").get(pk=reservation_id)
        return _Claimed(
            **{name: getattr(resv, name) for name in _CLAIMED_COLUMNS},
            input_price=resv.price.input_price,
            output_price=resv.price.output_price,
        )
    with db.cursor() as cursor:
        cursor.execute(
            _claim_sql(db.vendor),
            [settled, db.ops.adapt_datetimefield_value(now), reservation_id, held],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    values = dict(zip((*_CLAIMED_COLUMNS, "input_price", "output_price"), row, strict=True))
    request_id = values["request_id"]
    held_counters = values["held_counters"]
    values.update(
        request_id=request_id if isinstance(request_id, uuid.UUID) else uuid.UUID(request_id),
        held_counters=(
            json.loads(held_counters) if isinstance(held_counters, str) else held_counters
        ),
        price_is_fallback=bool(values["price_is_fallback"]),
        is_fallback=bool(values["is_fallback"]),
        bypassed=bool(values["bypassed"]),
    )
    return _Claimed(**values)


@functools.cache
def _claim_sql(vendor: str) -> str:
    q = connection.ops.quote_name
    resv, price = q(BudgetReservation._meta.db_table), q(ModelPrice._meta.db_table)
    columns = ", ".join(f"{resv}.{q(name)}" for name in _CLAIMED_COLUMNS)
    # Quoted identifiers of our own models; every value is a parameter.
    return (
        f"UPDATE {resv} SET {q('state')} = %s, {q('settled_at')} = %s "  # noqa: S608
        f"WHERE {resv}.{q('id')} = %s AND {resv}.{q('state')} = %s "
        f"RETURNING {columns}, "
        f"(SELECT {price}.{q('input_price')} FROM {price} "
        f"WHERE {price}.{q('id')} = {resv}.{q('price_id')}), "
        f"(SELECT {price}.{q('output_price')} FROM {price} "
        f"WHERE {price}.{q('id')} = {resv}.{q('price_id')})"
    )


def _counters_move(moves: list[tuple[CounterKey, int, int]]) -> None:
    """`reserved -= release, spent += charge` on every counter of one settle (`moves` in
    global key order), in one UPDATE: `CASE` on the remembered ids, each row matched by id
    *and* natural key as in `_counter_move`. A counter whose remembered id no longer names
    it (a test rolled its rows back) is not matched; it is moved on its own afterwards,
    the per-counter way that re-resolves the id (out of key order: ids go stale only when
    counter rows are deleted, which no code path does). A counter without a remembered id
    sends the whole settle the per-counter way (see below).

    Deadlocks: one UPDATE locks its rows in scan order, not key order. SQLite has no row
    locks (one writer at a time), but on PostgreSQL two settles, or a settle and a reserve
    (which holds counters one by one in key order), could each hold a row the other
    wants. There the rows are first locked with `SELECT ... ORDER BY <key order> FOR
    UPDATE` (PostgreSQL locks in the order the rows come out of the sort), so every
    transaction still takes counter locks in the one global key order."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    if len(moves) < 2:
        for key, release, charge in moves:
            _counter_move(key, release=release, charge=charge)
        return
    remembered = [_counter_ids.get(key) for key, _, _ in moves]
    ids = [cid for cid in remembered if cid is not None]
    if len(ids) != len(moves) or len(set(ids)) != len(ids):
        # A counter this process has not seen yet (a new window) may have to be created,
        # and creating a row locks it: that has to happen in key order too, so each
        # counter is resolved and moved in turn. Likewise when stale ids collide.
        for key, release, charge in moves:
            _counter_move(key, release=release, charge=charge)
        return
    match: list[Any] = []
    for cid, (key, _, _) in zip(ids, moves, strict=True):
        period, kind, value, start = key
        match += [cid, period, kind, value, db.ops.adapt_datefield_value(start)]
    vendor, n = db.vendor, len(moves)
    with db.cursor() as cursor:
        if vendor == "postgresql":
            # Lock the rows that match (id and natural key) in key order; then update those
            # by id alone. (Few parameters keep both statements in psycopg's query cache,
            # which skips statements of more than 50.)
            cursor.execute(_counters_lock_sql(vendor, n), match)
            moved = {row[0] for row in cursor.fetchall()}
            todo = [(cid, r, c) for cid, (_, r, c) in zip(ids, moves, strict=True) if cid in moved]
            if todo:
                params: list[Any] = [x for cid, r, _ in todo for x in (cid, r)]
                params += [x for cid, _, c in todo for x in (cid, c)]
                params += [cid for cid, _, _ in todo]
                cursor.execute(_counters_move_by_id_sql(vendor, len(todo)), params)
        else:
            releases: list[Any] = []
            charges: list[Any] = []
            for cid, (_, release, charge) in zip(ids, moves, strict=True):
                releases += [cid, release]
                charges += [cid, charge]
            cursor.execute(_counters_move_sql(vendor, n), [*releases, *charges, *match])
            moved = {row[0] for row in cursor.fetchall()}
    for cid, (key, release, charge) in zip(ids, moves, strict=True):
        if cid not in moved:
            _counter_move(key, release=release, charge=charge)


def _counters_match(n: int) -> str:
    """`n` counters, each matched by id *and* natural key (five parameters each)."""
    q = connection.ops.quote_name
    one = (
        f"({q('id')} = %s AND {q('period')} = %s AND {q('scope_kind')} = %s "
        f"AND {q('scope_value')} = %s AND {q('window_start')} = %s)"
    )
    return " OR ".join([one] * n)


@functools.cache
def _counters_move_sql(vendor: str, n: int) -> str:
    q = connection.ops.quote_name
    by_id = " ".join(["WHEN %s THEN %s"] * n)
    # Quoted identifiers of our own model; every value is a parameter.
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} - CASE {q('id')} {by_id} END, "
        f"{q('spent_nanos')} = {q('spent_nanos')} + CASE {q('id')} {by_id} END "
        f"WHERE {_counters_match(n)} RETURNING {q('id')}"
    )


@functools.cache
def _counters_lock_sql(vendor: str, n: int) -> str:
    q = connection.ops.quote_name
    # The global key order: Python compares str by code point, as collation "C" does.
    order = ", ".join(f'{q(name)} COLLATE "C"' for name in ("period", "scope_kind", "scope_value"))
    return (
        f"SELECT {q('id')} FROM {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"WHERE {_counters_match(n)} ORDER BY {order}, {q('window_start')} FOR UPDATE"
    )


@functools.cache
def _counters_move_by_id_sql(vendor: str, n: int) -> str:
    q = connection.ops.quote_name
    by_id = " ".join(["WHEN %s THEN %s"] * n)
    ids = ", ".join(["%s"] * n)
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} - CASE {q('id')} {by_id} END, "
        f"{q('spent_nanos')} = {q('spent_nanos')} + CASE {q('id')} {by_id} END "
        f"WHERE {q('id')} IN ({ids})"
    )


# The async twins give a pooled connection back as soon as they are done (rhetor_site.db):
# a request must not hold one across its provider call.
abudget_reserve = sync_to_async(released(budget_reserve))
abudget_settle = sync_to_async(released(budget_settle))


# --- Settling through a database outage -------------------------------------------------------

# Settles handed to the background because the database stayed away (held so they are not
# garbage-collected; see `pending_settles`).
_pending_settles: set[asyncio.Task[None]] = set()
_UNREACHABLE = (OperationalError, InterfaceError)


def _budget_settle_reconnecting(**kwargs: object) -> UsageRecord:
    # After a failed try the thread's connection may be broken (a terminated backend, a
    # restarted server): replace it, or every retry would fail on the dead one.
    close_old_connections()
    return budget_settle(**kwargs)  # type: ignore[arg-type]


_abudget_settle_reconnecting = sync_to_async(released(_budget_settle_reconnecting))


async def abudget_settle_retrying(
    *,
    reservation_id: int,
    usage: TokenUsage | None,
    status: str,
    latency_ms: int,
    error: str = "",
    patience: float | None = None,
) -> UsageRecord | None:
    """`budget_settle` for an attempt that reached a provider, which must not lose its
    usage record when the database is briefly unreachable (it is down, restarting, or its
    connections were cut). The settle is retried (it is idempotent) with backoff for
    `patience` seconds (RHETOR_SETTLE_RETRY_SECONDS); if the database is still away it
    is handed to a background task that keeps trying until the database answers, and None
    is returned (the caller then does not know the cost yet). Other errors propagate."""
    kwargs: dict[str, object] = {
        "reservation_id": reservation_id,
        "usage": usage,
        "status": status,
        "latency_ms": latency_ms,
        "error": error,
    }
    patience = settings.RHETOR_SETTLE_RETRY_SECONDS if patience is None else patience
    deadline = time.monotonic() + patience
    delay = 0.05
    try:
        return await abudget_settle(**kwargs)  # type: ignore[arg-type]
    except _UNREACHABLE as exc:
        logger.warning("settling reservation %s failed, retrying: %r", reservation_id, exc)
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)
        try:
            return await _abudget_settle_reconnecting(**kwargs)
        except _UNREACHABLE:
            continue
    # A fresh context: the task outlives the request, and must not inherit its
    # thread-sensitive executor (asgiref refuses calls through it once the request ended).
    task = asyncio.get_running_loop().create_task(
        _settle_in_background(kwargs), context=contextvars.Context()
    )
    _pending_settles.add(task)
    task.add_done_callback(_pending_settles.discard)
    logger.error(
        "the database is still unreachable; reservation %s will be settled when it returns",
        reservation_id,
    )
    return None


async def _settle_in_background(kwargs: dict[str, object]) -> None:
    delay = 0.5
    while True:
        await asyncio.sleep(delay)
        try:
            await _abudget_settle_reconnecting(**kwargs)
        except _UNREACHABLE:
            delay = min(delay * 2, 30.0)
            continue
        except Exception:
            logger.exception("settling reservation %s failed", kwargs["reservation_id"])
            return
        logger.info("reservation %s settled after the outage", kwargs["reservation_id"])
        return


def pending_settles() -> int:
    """How many settles wait for the database to return (this process)."""
    return len(_pending_settles)


async def await_pending_settles() -> None:
    """Wait until every settle handed to the background is done (tests, shutdown)."""
    while _pending_settles:
        await asyncio.gather(*list(_pending_settles), return_exceptions=True)


def reservation_release_stale(*, older_than: dt.timedelta) -> int:
    """Settle, as errors with nothing charged, the holds of requests that never settled
    (a worker died mid-request). Returns how many were released."""
    cutoff = timezone.now() - older_than
    stale = BudgetReservation.objects.filter(
        state=BudgetReservation.State.HELD, created_at__lt=cutoff
    ).values_list("id", flat=True)
    released = 0
    for reservation_id in list(stale):
        record = budget_settle(
            reservation_id=reservation_id,
            usage=None,
            status=UsageRecord.Status.ERROR,
            latency_ms=0,
            error="hold released: the request never settled",
        )
        if record.error.startswith("hold released"):
            released += 1
    return released


# --- Limits, policies, resets -------------------------------------------------------------------


def budget_config_touched() -> None:
    """Prices or limits changed in the current transaction: drop this worker's copy of the
    budget configuration now (its own transaction sees the change) and, once committed,
    make every worker reload (budget.selectors, "cached per worker")."""
    budget_config_drop()
    transaction.on_commit(budget_config_changed)


def parse_scope(scope: str) -> tuple[str, str]:
    """ "all" | "provider:<id>" | "component:<name>" -> (scope_kind, scope_value)."""
    scope = (scope or "all").strip()
    if scope == "all":
        return "all", ""
    kind, sep, value = scope.partition(":")
    if not sep or kind not in ("provider", "component") or not value.strip():
        raise InvalidInput(BAD_SCOPE.format(scope=scope), field="scope")
    return kind, value.strip()


def _check_period(period: str) -> None:
    if period not in policies.PERIODS:
        raise InvalidInput(BAD_PERIOD.format(period=period), field="period")


def _check_policy(policy: str) -> None:
    if policy not in policies.POLICIES:
        raise InvalidInput(BAD_POLICY.format(policy=policy), field="policy")


@transaction.atomic
def budget_limit_set(
    *,
    period: str,
    limit_nanos: int | None,
    scope_kind: str = "all",
    scope_value: str = "",
    enforcement: str | None = None,
) -> BudgetLimit:
    """Create or change the limit of one period and scope. Without `enforcement`, an
    existing row keeps its policy and a new one gets RHETOR_BUDGET_POLICY."""
    _check_period(period)
    if enforcement is not None:
        _check_policy(enforcement)
    if limit_nanos is not None and limit_nanos < 0:
        raise InvalidInput("limit_amount must not be negative", field="limit_amount")
    row = (
        BudgetLimit.objects.select_for_update()
        .filter(period=period, scope_kind=scope_kind, scope_value=scope_value)
        .first()
    )
    if row is None:
        row = BudgetLimit(
            period=period,
            scope_kind=scope_kind,
            scope_value=scope_value,
            enforcement=enforcement or env_default_policy(),
        )
    elif enforcement is not None:
        row.enforcement = enforcement
    row.limit_nanos = limit_nanos
    row.full_clean()
    row.save()
    budget_config_touched()
    return row


@transaction.atomic
def budget_policy_set(
    *, period: str, policy: str, scope_kind: str = "all", scope_value: str = ""
) -> BudgetLimit:
    """Set the policy of one period and scope. A new row for scope "all" starts from the
    env default limit of the period (RHETOR_BUDGET_<PERIOD>_LIMIT)."""
    _check_period(period)
    _check_policy(policy)
    row = (
        BudgetLimit.objects.select_for_update()
        .filter(period=period, scope_kind=scope_kind, scope_value=scope_value)
        .first()
    )
    if row is None:
        default = env_default_limits()[period] if scope_kind == "all" else None
        row = BudgetLimit(
            period=period, scope_kind=scope_kind, scope_value=scope_value, limit_nanos=default
        )
    row.enforcement = policy
    row.full_clean()
    row.save()
    budget_config_touched()
    return row


@transaction.atomic
def budget_reset(
    *, period: str, scope_kind: str = "all", scope_value: str = "", actor: str = "", note: str = ""
) -> BudgetReset:
    """An operator's reset of the current window of one period and scope: the counter's
    baseline moves up to what was spent, so the window starts again from zero. The usage
    ledger is untouched; the reset is recorded as an audit row."""
    _check_period(period)
    key: CounterKey = (
        period,
        scope_kind,
        scope_value,
        policies.window_start(period=period, now=timezone.now(), tz=settings.RHETOR_TIMEZONE),
    )
    cid = _counter_get(key).pk
    before = _counter_qs(key, cid).select_for_update().get()
    _counter_qs(key, cid).update(baseline_nanos=F("spent_nanos"))
    after = _counter_qs(key, cid).get()
    budget_config_touched()
    return BudgetReset.objects.create(
        counter=after,
        period=period,
        scope_kind=scope_kind,
        scope_value=scope_value,
        window_start=key[3],
        baseline_before=before.baseline_nanos,
        spent_nanos=after.spent_nanos,
        actor=actor,
        note=note,
    )


# --- Prices ---------------------------------------------------------------------------------------


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
