"""Settle: release a request's hold and charge what it actually cost, once (HOUSE_STYLE
R10, phase 3), and release the holds of requests that never settled."""

import datetime as dt
import functools
import json
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from budget import policies
from budget.errors import (
    BAD_STATUS,
    NEGATIVE_TOKENS,
    RESERVATION_NOT_FOUND,
    ReservationNotFound,
)
from budget.models import BudgetReservation, ModelPrice, UsageRecord
from budget.services.counters import CounterKey, counters_move, key_from_json, request_keys
from budget.services.rows import row_insert
from budget.services.usage import TokenUsage
from rhetor_site.db import released
from rhetor_site.errors import InvalidInput

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
    moves: dict[CounterKey, tuple[int, int]] = {}  # release, charge
    for stored in resv.held_counters:
        key = key_from_json(stored)
        release, charge = moves.get(key, (0, 0))
        moves[key] = (release + resv.reserved_nanos, charge)
    if charged:
        for key in request_keys(provider=resv.provider, component=resv.component, now=now):
            release, charge = moves.get(key, (0, 0))
            moves[key] = (release, charge + charged)
    counters_move([(key, *moves[key]) for key in sorted(moves) if any(moves[key])])

    source = UsageRecord.Source.NONE if usage is None else UsageRecord.Source(usage.source)
    return row_insert(
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


# The async twin gives a pooled connection back as soon as it is done (rhetor_site.db): a
# request must not hold one across its provider call.
abudget_settle = sync_to_async(released(budget_settle))


def reservation_release_stale(*, older_than: dt.timedelta) -> int:
    """Settle, as errors with nothing charged, the holds of requests that never settled
    (a worker died mid-request). Returns how many were released."""
    cutoff = timezone.now() - older_than
    stale = BudgetReservation.objects.filter(
        state=BudgetReservation.State.HELD, created_at__lt=cutoff
    ).values_list("id", flat=True)
    count = 0
    for reservation_id in list(stale):
        record = budget_settle(
            reservation_id=reservation_id,
            usage=None,
            status=UsageRecord.Status.ERROR,
            latency_ms=0,
            error="hold released: the request never settled",
        )
        if record.error.startswith("hold released"):
            count += 1
    return count


# --- Claiming a reservation ------------------------------------------------------------------


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
    """Mark a held reservation settled and read it back, with its price's per-token prices,
    in one statement. None when it is not held (settled already, or unknown)."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    held, settled = BudgetReservation.State.HELD, BudgetReservation.State.SETTLED
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
    # Guarantees: a reservation moves from held to settled once. Of concurrent settles of
    # one reservation exactly one gets its row back (the others wait for its commit, then
    # match nothing), so its hold is released and its cost charged once.
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
