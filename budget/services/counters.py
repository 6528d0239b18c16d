"""The spend counters, and every SQL statement that moves money on them.

A SpendCounter is what one scope (all, a provider, a component) spent and holds in one
window of one period. Reserve holds a request's worst case on the counters of its limits;
settle releases the hold and charges the actual cost; an operator's reset moves the
baseline. Race-freedom rests on three rules (HOUSE_STYLE R6):

- A counter changes only in a single UPDATE that computes the change in SQL
  (`reserved = reserved + n`), never from a value read into Python first, so concurrent
  requests never lose each other's changes.
- The enforce check and the hold are one conditional UPDATE (`counter_hold`), so two
  requests can never both take the last of a limit.
- One request's holds, and one settle's moves, run in one transaction, which takes its
  counters' row locks in one global order, that of CounterKey (tuples of str and date
  compare as PostgreSQL's collation "C" sorts them), so two transactions never wait on
  each other in a cycle.

Counter rows are never deleted, so each process remembers their ids. Every statement
matches its row by id *and* natural key (`_match_sql`): a remembered id that no longer
names its counter (a test rolled its rows back and the ids were reused) matches nothing
instead of the wrong row, and the statement runs again with the id looked up afresh.

The statements of reserve and settle run on every request (on six to nine counters), so
each is written as SQL once, with quoted identifiers of our own model and every value a
parameter, instead of being compiled by the ORM each time; they use UPDATE ... RETURNING
(PostgreSQL; SQLite >= 3.35). The rare ones (creating a counter, an operator's reset) are
ORM queries.
"""

import datetime as dt
import functools
import threading
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, QuerySet

from budget import policies
from budget.models import SpendCounter

CounterKey = tuple[str, str, str, dt.date]  # period, scope_kind, scope_value, window_start

# Remembered counter ids; only ids of committed rows (see `_counter_id`).
_counter_ids: dict[CounterKey, int] = {}
_counter_lock = threading.Lock()


def counter_keys(scopes: Iterable[tuple[str, str, str]], *, now: dt.datetime) -> list[CounterKey]:
    """The keys of the counters of `scopes` (period, scope kind, scope value) whose
    windows contain `now`, in the order of `scopes`."""
    tz = settings.RHETOR_TIMEZONE
    return [
        (period, kind, value, policies.window_start(period=period, now=now, tz=tz))
        for period, kind, value in scopes
    ]


def request_keys(*, provider: str, component: str, now: dt.datetime) -> list[CounterKey]:
    """Every counter a request's cost is charged to at `now`, in key order: each period,
    for all providers, its provider and (when it has one) its component."""
    scopes = [("all", ""), ("provider", provider)]
    if component:
        scopes.append(("component", component))
    return sorted(
        counter_keys(
            [(period, kind, value) for period in policies.PERIODS for kind, value in scopes],
            now=now,
        )
    )


def key_to_json(key: CounterKey) -> list[str]:
    """A key as a reservation's `held_counters` stores it."""
    period, kind, value, start = key
    return [period, kind, value, start.isoformat()]


def key_from_json(stored: list[str]) -> CounterKey:
    period, kind, value, start = stored
    return (period, kind, value, dt.date.fromisoformat(start))


# --- Resolving a key to its row ---------------------------------------------------------------


def _counter_id(key: CounterKey, *, fresh: bool = False) -> int:
    """The id of the counter for `key` (the remembered one unless `fresh`), creating the
    row if needed: INSERT ... ON CONFLICT DO NOTHING, so concurrent creators agree on one."""
    if not fresh:
        cid = _counter_ids.get(key)
        if cid is not None:
            return cid
    period, kind, value, start = key
    lookup = {"period": period, "scope_kind": kind, "scope_value": value, "window_start": start}
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
    """The counter row by id and natural key, the ORM way (`_match_sql`)."""
    period, kind, value, start = key
    return SpendCounter.objects.filter(
        pk=cid, period=period, scope_kind=kind, scope_value=value, window_start=start
    )


def counter_get(key: CounterKey) -> SpendCounter:
    """The counter for `key`, created (at zero) if it does not exist yet."""
    row = _counter_qs(key, _counter_id(key)).first()
    if row is None:
        row = _counter_qs(key, _counter_id(key, fresh=True)).get()
    return row


def _vanished(key: CounterKey) -> RuntimeError:  # pragma: no cover
    """A counter row was not found even by a fresh lookup (rows are never deleted)."""
    return RuntimeError(f"spend counter {key} vanished")


# --- Reserve: holds ---------------------------------------------------------------------------


def counter_hold(key: CounterKey, *, needed: int, limit: int) -> SpendCounter | None:
    """The enforce check: hold `needed` on the counter only if its usage with the hold
    stays within `limit`. None when it held; else the counter as it stood when it refused
    (nothing changed)."""
    db = connections[DEFAULT_DB_ALIAS]  # looked up once; each `connection.x` looks again
    for fresh in (False, True):
        cid = _counter_id(key, fresh=fresh)
        with db.cursor() as cursor:
            cursor.execute(_hold_sql(db.vendor), [needed, *_match(db, cid, key), limit - needed])
            if cursor.rowcount == 1:
                return None
        counter = _counter_qs(key, cid).first()
        if counter is not None:
            return counter
    raise _vanished(key)  # pragma: no cover - the row was just found or created


@functools.cache
def _hold_sql(vendor: str) -> str:
    # Guarantees: `reserved` grows only on a row whose `spent - baseline + reserved` is
    # still at most the limit less what is held (the last parameter), checked and changed
    # in one statement, so no concurrent hold can slip in between.
    q = connection.ops.quote_name
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} + %s "
        f"WHERE {_match_sql(1)} "
        f"AND {q('spent_nanos')} - {q('baseline_nanos')} + {q('reserved_nanos')} <= %s"
    )


def counter_add(key: CounterKey, *, needed: int) -> int:
    """Hold `needed` on the counter unconditionally (a warn-policy limit, or a bypassed
    enforce one); returns its usage with the hold (`spent - baseline + reserved`)."""
    db = connections[DEFAULT_DB_ALIAS]
    for fresh in (False, True):
        cid = _counter_id(key, fresh=fresh)
        with db.cursor() as cursor:
            cursor.execute(_add_sql(db.vendor), [needed, *_match(db, cid, key)])
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
    raise _vanished(key)  # pragma: no cover - the row was just found or created


@functools.cache
def _add_sql(vendor: str) -> str:
    # Guarantees: `reserved` grows by exactly the parameter, and the usage returned is the
    # row's own after this change (no other request's change can come in between).
    q = connection.ops.quote_name
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} + %s "
        f"WHERE {_match_sql(1)} "
        f"RETURNING {q('spent_nanos')} - {q('baseline_nanos')} + {q('reserved_nanos')}"
    )


# --- Settle: release the hold, charge the cost ------------------------------------------------

Move = tuple[CounterKey, int, int]  # counter, release (reserved -= n), charge (spent += n)


def counters_move(moves: list[Move]) -> None:
    """`reserved -= release, spent += charge` on every counter of one settle, `moves` in
    key order, each counter moved exactly once.

    When every counter's id is remembered (and no two share one) they move in one batch;
    a counter the batch did not match (its remembered id is stale) is then moved on its
    own with its id looked up afresh (out of key order: ids go stale only when counter
    rows are deleted, which no code path does). Otherwise, when a counter has no
    remembered id (a new window), every counter moves on its own in key order: creating
    a row locks it, and that has to happen in key order too."""
    db = connections[DEFAULT_DB_ALIAS]
    remembered = [_counter_ids.get(key) for key, _, _ in moves]
    ids = [cid for cid in remembered if cid is not None]
    if len(moves) < 2 or len(ids) != len(moves) or len(set(ids)) != len(ids):
        for key, release, charge in moves:
            _counter_move(db, key, release=release, charge=charge)
        return
    moved = _counters_move_batch(db, list(zip(ids, moves, strict=True)))
    for cid, (key, release, charge) in zip(ids, moves, strict=True):
        if cid not in moved:
            _counter_move(db, key, release=release, charge=charge)


def _counter_move(db: BaseDatabaseWrapper, key: CounterKey, *, release: int, charge: int) -> None:
    for fresh in (False, True):
        cid = _counter_id(key, fresh=fresh)
        with db.cursor() as cursor:
            params = [cid, release, cid, charge, *_match(db, cid, key)]
            cursor.execute(_move_sql(db.vendor, 1), params)
            if cursor.fetchall():
                return
    raise _vanished(key)  # pragma: no cover - the row was just found or created


def _counters_move_batch(db: BaseDatabaseWrapper, batch: list[tuple[int, Move]]) -> set[int]:
    """Move the counters of `batch` (remembered id, move) in one UPDATE; returns the ids
    it moved (those that still name their counter)."""
    releases: list[Any] = [x for cid, (_, release, _) in batch for x in (cid, release)]
    charges: list[Any] = [x for cid, (_, _, charge) in batch for x in (cid, charge)]
    match: list[Any] = [x for cid, (key, _, _) in batch for x in _match(db, cid, key)]
    n = len(batch)
    with db.cursor() as cursor:
        if db.vendor != "postgresql":
            # SQLite has no row locks (one writer at a time): one statement.
            cursor.execute(_move_sql(db.vendor, n), [*releases, *charges, *match])
            return {row[0] for row in cursor.fetchall()}
        # An UPDATE locks its rows in scan order, not key order, so two settles (or a
        # settle and a reserve) could each hold a row the other waits for: lock the rows
        # in key order first, then update those by id alone.
        cursor.execute(_lock_sql(db.vendor, n), match)
        locked = {row[0] for row in cursor.fetchall()}
        todo = [(cid, move) for cid, move in batch if cid in locked]
        if todo:
            params: list[Any] = [x for cid, (_, release, _) in todo for x in (cid, release)]
            params += [x for cid, (_, _, charge) in todo for x in (cid, charge)]
            params += [cid for cid, _ in todo]
            cursor.execute(_move_by_id_sql(db.vendor, len(todo)), params)
        return locked


def _move_set(n: int) -> str:
    """The change of a move of `n` counters: parameters (id, release) * n, then
    (id, charge) * n."""
    q = connection.ops.quote_name
    by_id = " ".join(["WHEN %s THEN %s"] * n)
    return (
        f"SET {q('reserved_nanos')} = {q('reserved_nanos')} - CASE {q('id')} {by_id} END, "
        f"{q('spent_nanos')} = {q('spent_nanos')} + CASE {q('id')} {by_id} END"
    )


@functools.cache
def _move_sql(vendor: str, n: int) -> str:
    # Guarantees: each of the `n` counters matched (by id and natural key) moves by exactly
    # its own release and charge, in one statement; the ids returned are those it moved.
    q = connection.ops.quote_name
    return (
        f"UPDATE {q(SpendCounter._meta.db_table)} {_move_set(n)} "
        f"WHERE {_match_sql(n)} RETURNING {q('id')}"
    )


@functools.cache
def _lock_sql(vendor: str, n: int) -> str:
    # Guarantees (PostgreSQL): the counters matched (by id and natural key) are locked in
    # the global key order (PostgreSQL locks rows in the order they leave the sort; Python
    # compares str by code point, as collation "C" does); their ids are returned.
    q = connection.ops.quote_name
    order = ", ".join(f'{q(name)} COLLATE "C"' for name in ("period", "scope_kind", "scope_value"))
    return (
        f"SELECT {q('id')} FROM {q(SpendCounter._meta.db_table)} "  # noqa: S608
        f"WHERE {_match_sql(n)} ORDER BY {order}, {q('window_start')} FOR UPDATE"
    )


@functools.cache
def _move_by_id_sql(vendor: str, n: int) -> str:
    # Guarantees: as `_move_sql`, on rows `_lock_sql` has just matched and locked. Few
    # parameters keep it in psycopg's prepared-statement cache.
    q = connection.ops.quote_name
    ids = ", ".join(["%s"] * n)
    return f"UPDATE {q(SpendCounter._meta.db_table)} {_move_set(n)} WHERE {q('id')} IN ({ids})"


# --- An operator's reset ----------------------------------------------------------------------


def counter_reset(key: CounterKey) -> tuple[int, SpendCounter]:
    """Move the counter's baseline up to what it spent, so its window's usage starts again
    from zero; returns the baseline it replaced and the counter after. Call it inside a
    transaction: the row stays locked from the read of the old baseline to the commit."""
    cid = counter_get(key).pk
    before = _counter_qs(key, cid).select_for_update().get()
    _counter_qs(key, cid).update(baseline_nanos=F("spent_nanos"))
    return before.baseline_nanos, _counter_qs(key, cid).get()


# --- Matching ---------------------------------------------------------------------------------


def _match(db: BaseDatabaseWrapper, cid: int, key: CounterKey) -> list[Any]:
    """The parameters of one counter in `_match_sql`."""
    period, kind, value, start = key
    return [cid, period, kind, value, db.ops.adapt_datefield_value(start)]


def _match_sql(n: int) -> str:
    """`n` counters, each matched by id *and* natural key (five parameters each)."""
    q = connection.ops.quote_name
    one = (
        f"({q('id')} = %s AND {q('period')} = %s AND {q('scope_kind')} = %s "
        f"AND {q('scope_value')} = %s AND {q('window_start')} = %s)"
    )
    return " OR ".join([one] * n)
